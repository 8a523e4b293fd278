"""Ansible's connection to the test containers: containers.podman.podman with
pipelining.

The podman connection runs `podman exec` without stdin, so Ansible copies
each module into the container, runs it and removes it: five `podman exec`
per module (home, temporary directory, chmod, run, removal; seen with -vvv).
Attached to stdin, the module is piped to Python in one, as Ansible
does over SSH with pipelining (this repository's ansible.cfg turns it on). On
the 2-core test bed, a playbook of 20 stat runs under sudo took 19.4-20.0 s
through containers.podman.podman and 8.1-8.9 s through this plugin; a
scenario runs the roles many times (converge, idempotence, its tests' own
runs). Every scenario uses it (.config/molecule/config.yml).
"""

from ansible_collections.containers.podman.plugins.connection.podman import Connection as PodmanConnection

DOCUMENTATION = """
name: podman_pipelined
short_description: Run tasks in a podman container, modules piped to Python
description:
  - containers.podman.podman, with stdin attached to C(podman exec) so that
    modules are pipelined.
options:
  remote_addr:
    description: The name or ID of the container.
    default: inventory_hostname
    vars:
      - name: ansible_host
      - name: inventory_hostname
      - name: ansible_podman_host
  remote_user:
    description: The user commands run as in the container.
    vars:
      - name: ansible_user
  podman_extra_args:
    description: Extra arguments to the podman command.
    default: ''
    vars:
      - name: ansible_podman_extra_args
  podman_executable:
    description: The podman command.
    default: podman
    vars:
      - name: ansible_podman_executable
  pipelining:
    description: Pipe modules to Python instead of copying them in.
    default: true
    type: boolean
    vars:
      - name: ansible_pipelining
"""


class Connection(PodmanConnection):
    transport = "podman_pipelined"
    has_pipelining = True

    def _podman(self, cmd, cmd_args=None, in_data=None, use_container_id=True):
        # Only exec_command passes data: attach stdin for it.
        if in_data is not None and isinstance(cmd, list) and cmd[:1] == ["exec"]:
            cmd = ["exec", "--interactive"] + cmd[1:]
        return super()._podman(cmd, cmd_args, in_data, use_container_id)
