# LEAD SHIM, removed at merge
from __future__ import annotations


def to_lua(value):
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if value.isdigit() and len(value) < 12:
            return value
        return '"' + "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "\\%03d" % ord(c) for c in value) + '"'
    if isinstance(value, dict):
        return "{ " + ", ".join('[%s] = %s' % (to_lua(str(k)), to_lua(v)) for k, v in sorted(value.items())) + " }"
    return "{ " + ", ".join(to_lua(v) for v in value) + " }"


class FilterModule:
    def filters(self):
        return {"to_lua": to_lua}
