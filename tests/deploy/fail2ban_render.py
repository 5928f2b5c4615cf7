"""Run by Debian's python3 (fail2ban's modules live there, not in the venv):
`python3 fail2ban_render.py CONFDIR JAIL ACTION IP` reads CONFDIR the way
fail2ban-client does, sets up the jail's ACTION as fail2ban-server does, and prints
as JSON the jail's actions, the action's options and its actionban command rendered
for IP, exactly the shell command fail2ban would run."""

import json
import sys

from fail2ban.client.jailsreader import JailsReader
from fail2ban.server.action import CommandAction
from fail2ban.server.ipdns import IPAddr


def main() -> None:
    confdir, jail, action, address = sys.argv[1:5]
    reader = JailsReader(force_enable=False, basedir=confdir)
    if not reader.read() or not reader.getOptions():
        raise SystemExit(f"fail2ban cannot read {confdir}")
    actions: list[str] = []
    options: dict[str, object] = {}
    for command in reader.convert(allow_no_files=True):
        if command[:3] == ["set", jail, "addaction"]:
            actions.append(command[3])
        elif command[:4] == ["multi-set", jail, "action", action]:
            options = dict(command[4])
    if not options:
        raise SystemExit(f"jail {jail} has no action {action}")
    commander = CommandAction(None, action)
    for key, value in options.items():
        setattr(commander, key, value)
    ip = IPAddr(address)
    if not ip.isValid:
        raise SystemExit(f"not an address: {address}")
    family = "inet6" if ip.isIPv6 else "inet4"
    cmd = commander.replaceTag("<actionban>", commander._properties, conditional="family=" + family)
    cmd = commander.replaceDynamicTags(cmd, {"ip": ip, "family": family, "fid": ip})
    print(json.dumps({"actions": actions, "options": options, "actionban": cmd}))


main()
