-- luacheck configuration for roles/haproxy/files/checktcp.lua (HAProxy's Lua).
std = "lua53"
read_globals = { "core", "Regex" }
max_line_length = 120
