"""Start an lvs_app lab from topologies/<name>.json.

    sudo .venv/bin/python mininet/lab.py nat --demo     # requests to the VIP, lvsadm -L
    sudo .venv/bin/python mininet/lab.py droute --cli   # Mininet's CLI (exit or Ctrl-D stops)
    sudo .venv/bin/python mininet/lab.py tunnel         # runs until Ctrl-C
    sudo .venv/bin/python mininet/lab.py nat --demo --controller-cmd simple_switch_13
    sudo .venv/bin/python mininet/lab.py droute --ftp-demo --ssl-demo   # the founding scenarios
    sudo .venv/bin/python mininet/lab.py nat --ftp --tls --cli          # servers, then the CLI
    sudo .venv/bin/python mininet/lab.py droute --restart-demo          # kill -9, restart
    sudo .venv/bin/python mininet/lab.py droute --ha --restart-demo     # kill -9 of the master
    sudo .venv/bin/python mininet/lab.py leafspine --cli    # five switches, --observe-links
    sudo .venv/bin/python mininet/lab.py leafspine --demo   # NAT across the fabric, flows per switch
    sudo .venv/bin/python mininet/lab.py leafspine_tunnel --demo   # VXLAN from two leaves
    sudo .venv/bin/python mininet/lab.py nat --ipv6 --demo  # dual-stack: also the IPv6 VIP

The controller is ``ryu-manager lvs_app`` unless ``--controller-cmd`` says
otherwise (a command with the placeholders {venv} {repo} {of_port}
{rest_port}, or ``simple_switch_13`` for Ryu's learning switch).  The
topology's lvsadm commands are applied when the controller is lvs_app.
A fabric (``leafspine``, ``leafspine_tunnel``) starts lvs_app with the
topology's controller arguments (``--observe-links``); Ryu's learning switch
is refused there (it floods, and the fabric has loops).  Its ``--demo`` also
prints each switch's flows: how many, and how many match transport ports
(per connection): the clients' leaves hold those, the spines and the
servers' leaf none.
``--ipv6`` makes the lab dual-stack (one-switch topologies): every host and
the VIP also get the IPv6 twin of their IPv4 address (a.b.c.d ->
fd00::a:b:c:d), the servers listen on IPv6 too, and with lvs_app the IPv6
twin of the topology's lvsadm commands is applied as well (VIP and servers
in brackets; tunnel servers stay IPv4 endpoints); the demo then also asks
the IPv6 VIP.
Everything started is stopped on exit, Ctrl-C or SIGTERM.
"""

import argparse
import collections
import re
import signal
import sys

# This directory is sys.path[0] when run as a script; it has no __init__.py,
# so "import mininet" still finds the Mininet library.
import lvslab
from lvslab_ha import BackupController, BackupPorts, master_args


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="lab.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("topology", help="a name in topologies/ (%s) or a JSON file"
                        % ", ".join(lvslab.topology_names(fabric=None)))
    parser.add_argument("--demo", action="store_true",
                        help="send requests from every client to the VIP, show who answered, "
                             "then lvsadm -L -n and lvsadm -L -c -n")
    parser.add_argument("--cli", action="store_true", help="drop into Mininet's CLI")
    parser.add_argument("--ftp", action="store_true",
                        help="start an FTP server (mininet/ftp_server.py) on every real server")
    parser.add_argument("--tls", action="store_true",
                        help="start openssl s_server on port 443 on every real server")
    parser.add_argument("--ftp-demo", action="store_true",
                        help="FTP through the seed's persistent port-0 service (-s pcc) in "
                             "every mode, then (direct routing, tunnel) without persistence")
    parser.add_argument("--ssl-demo", action="store_true",
                        help="TLS session resumption through a persistent service on 443, "
                             "then through a non-persistent one")
    parser.add_argument("--ha", action="store_true",
                        help="two controllers: the lab's is the master, a second ryu-manager "
                             "the backup (high availability; a rules file is made if none)")
    parser.add_argument("--restart-demo", action="store_true",
                        help="a persistent service and a connection held open, then kill -9 "
                             "of the controller (the master with --ha) and its restart (the "
                             "backup's takeover): nothing breaks")
    parser.add_argument("--ipv6", action="store_true",
                        help="a dual-stack lab: IPv6 in every host (fd00::a:b:c:d for "
                             "a.b.c.d), the IPv6 twin of the lvsadm commands, the demo "
                             "also to the IPv6 VIP (one-switch topologies)")
    parser.add_argument("--requests", type=int, default=6, metavar="N",
                        help="requests per client in the demo (default 6)")
    parser.add_argument("--controller-cmd", metavar="CMD",
                        help="controller command instead of ryu-manager lvs_app; "
                             "'simple_switch_13' for Ryu's L2 learning switch")
    lvsadm = parser.add_mutually_exclusive_group()
    lvsadm.add_argument("--lvsadm", dest="apply_lvsadm", action="store_true", default=None,
                        help="apply the topology's lvsadm commands (default with lvs_app)")
    lvsadm.add_argument("--no-lvsadm", dest="apply_lvsadm", action="store_false",
                        help="do not apply them")
    parser.add_argument("--rules-file", metavar="FILE", help="ryu-manager lvs_app --lvs-rules FILE")
    parser.add_argument("--of-port", type=int, help="OpenFlow port (default: a free one)")
    parser.add_argument("--rest-port", type=int, help="REST port (default: a free one)")
    parser.add_argument("--log-dir", help="default lab-logs/<topology>-<time>-<pid>")
    parser.add_argument("-v", "--verbose", action="store_true", help="Mininet's info output")
    args = parser.parse_args(argv)
    if args.controller_cmd == "simple_switch_13":
        args.controller_cmd = lvslab.SIMPLE_SWITCH_13_CMD
    if args.apply_lvsadm is None:
        args.apply_lvsadm = args.controller_cmd is None
    args.ftp = args.ftp or args.ftp_demo
    args.tls = args.tls or args.ssl_demo
    if (args.ftp_demo or args.ssl_demo or args.restart_demo or args.ha) \
            and args.controller_cmd is not None:
        parser.error("--ftp-demo, --ssl-demo, --restart-demo and --ha configure lvs_app: "
                     "no --controller-cmd")
    return args


def describe(lab):
    topo = lab.topology
    print(f"lab {lab.name}: {topo['description']}\n")
    print(f"controller: {' '.join(lab.controller_cmd)}")
    print(f"  OpenFlow 127.0.0.1:{lab.of_port}, REST http://127.0.0.1:{lab.rest_port}, "
          f"log {lab.controller_log_path}")
    if not lab.multi_switch:
        print(f"switch {lab.switch_name} (dpid {topo['switch']['dpid']}, tunnel source "
              f"{topo['switch']['tunnel_ip']} on LOCAL, {lvslab.VXLAN_PORT_NAME} = port "
              f"{lvslab.VXLAN_OFPORT}); VIP {topo['vip']} (MAC {topo['vip_mac']})"
              + (f", IPv6 VIP {lab.vip6}" if lab.ipv6 else ""))
    else:
        print(f"switches (all connected to the controller); VIP {topo['vip']} "
              f"(MAC {topo['vip_mac']})")
        for sw in lab.switch_specs:
            tunnel = (f", tunnel source {sw['tunnel_ip']} on LOCAL, "
                      f"{lab.vxlan_port_name(sw['name'])} = port {lvslab.VXLAN_OFPORT}"
                      if "tunnel_ip" in sw else "")
            print(f"  {sw['name']:<5} dpid {sw['dpid']:<4} {sw['role']}{tunnel}")
        print("links: " + ", ".join(
            f"{a}:{lab.link_ports(a, b)[0]}-{b}:{lab.link_ports(a, b)[1]}" for a, b in lab.links))
        print(f"fabric at start: {lab.fabric_status}")
    for spec in topo["clients"] + topo["servers"]:
        role = f"real server, {spec['method']}" if "method" in spec else "client"
        where = f"{lab.switch_of(spec['name'])} " if lab.multi_switch else ""
        ip6 = f"{lab.ip6(spec['name']):<17} " if lab.ipv6 else ""
        print(f"  {spec['name']:<5} {spec['ip']:<12} {ip6}{spec['mac']}  "
              f"{where}port {lab.port_of(spec['name'])}  {role}")
    timings = ", ".join(f"{k} {v:.2f}s" for k, v in lab.timings.items())
    print(f"started in {lab.timings['start']:.2f}s ({timings})\n")


def show(title, text):
    print(f"== {title}")
    print(text.rstrip() + "\n")


def demo(lab, requests, director):
    """Requests to the VIP (with the director) or to every real address (without);
    in a dual-stack lab to the IPv6 VIP (or every real IPv6 address) too."""
    failures = 0
    if not director:
        loss = lab.pingall()
        show("pingall", f"{loss:g}% lost")
        failures += loss > 0
        for client in lab.clients:
            for label, address in [("", lab.ip)] + ([(" (IPv6)", lab.ip6)] if lab.ipv6 else []):
                answers = []
                for server in lab.servers:
                    try:
                        answers.append(lab.curl(
                            client, f"http://{lvslab.url_host(address(server))}/"))
                    except lvslab.CommandError as err:
                        answers.append(f"FAILED({err.returncode})")
                        failures += 1
                print(f"{client} -> real servers{label}: {' '.join(answers)}")
        return failures
    vips = [(lab.vip, lab.ip)] + ([(lab.vip6, lab.ip6)] if lab.ipv6 else [])
    for vip, address in vips:
        url = f"http://{lvslab.url_host(vip)}/"
        print(f"== {requests} requests per client to {url}")
        for client in lab.clients:
            answers = []
            for _ in range(requests):
                try:
                    answers.append(lab.curl(client, url))
                except lvslab.CommandError as err:
                    answers.append(f"FAILED({err.returncode})")
                    failures += 1
            counts = collections.Counter(answers)
            print(f"{client:<4} ({address(client)}): {' '.join(answers)}   "
                  f"[{', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}]")
        print()
    for args in (["-L", "-n"], ["-L", "-c", "-n"]):
        proc = lab.lvsadm(*args, check=False)
        show("lvsadm " + " ".join(args), proc.stdout + proc.stderr)
        failures += proc.returncode != 0
    if lab.multi_switch:
        show("flows per switch (all / matching transport ports, i.e. per connection)",
             fabric_flows(lab))
    return failures


def fabric_flows(lab):
    """One line per switch: its flows, and those that match transport ports."""
    lines = []
    for spec in lab.switch_specs:
        flows = [line for line in lab.dump_flows(spec["name"]).splitlines()
                 if "actions=" in line]
        per_conn = sum(1 for line in flows if re.search(r"\b(tp|tcp|udp)_(src|dst)=", line))
        lines.append(f"{spec['name']:<5} {spec['role']:<6} {len(flows):>4} flows, "
                     f"{per_conn:>3} per connection")
    return "\n".join(lines)


# -s pcc with the lab's forwarding method: the seed's commands verbatim for
# direct routing (ipvsadm's default), with -i / -m for the other labs
SEED_FLAGS = {"droute": "", "tunnel": " -i", "masq": " -m"}
LVSADM_FLAGS = {"droute": " -g", "tunnel": " -i", "masq": " -m"}


def configure(lab, service, opts, flags, quiet=False):
    """lvsadm -C, -A <service> <opts>, -a for every real server; prints the commands."""
    commands = ["-C", f"-A {service} {opts}"]
    commands += [f"-a {service} -R {spec['ip']}{flags[spec['method']]}"
                 if flags is SEED_FLAGS else
                 f"-a {service} -r {spec['ip']}{flags[spec['method']]}"
                 for spec in lab.topology["servers"]]
    for command in commands:
        if not quiet:
            print(f"  lvsadm {command}")
        lab.lvsadm(command)


def ftp_demo(lab):
    """FTP in every mode through -s pcc; then without persistence (DR, tunnel)."""
    failures = 0
    vip = lab.vip
    print(f"== FTP through the seed's persistent port-0 service (the template covers "
          f"every port of {vip})")
    configure(lab, f"-t {vip}:0", "-s pcc", SEED_FLAGS)
    print(f"   each column: the server of the control connection's greeting (220 <name>) "
          f"/ the content of whoami.txt\n   ({lvslab.VIP_FTP_HINT})")
    for client in lab.clients:
        cells = []
        for mode in lvslab.CURL_FTP_MODES:
            r = lab.ftp(client, mode=mode, check=False)
            ok = r.ok and r.body == r.banner
            failures += not ok
            cells.append(f"{mode} {r.banner}/{r.body or f'FAILED({r.returncode})'}")
        listing = lab.ftp(client, "", listing=True, check=False)
        marker = [n for n in listing.body.split() if n.startswith("served-by-")]
        failures += not (listing.ok and marker == [f"served-by-{listing.banner}"])
        cells.append(f"NLST {' '.join(marker) or f'FAILED({listing.returncode})'}")
        print(f"{client:<4} ({lab.ip(client)}): " + " | ".join(cells))
    print()
    show("lvsadm -L -n", lab.lvsadm("-L", "-n").stdout)
    show("lvsadm -L -c -n (control :21, active data :20, passive data :30000-30100, "
         "the template :0)", lab.lvsadm("-L", "-c", "-n").stdout)
    methods = {spec["method"] for spec in lab.topology["servers"]}
    if methods & {"droute", "tunnel"}:
        print(f"== the same without persistence: one non-persistent fwmark for "
              f"{vip}:21 and the passive ports, rr")
        lab.lvsadm("--delete-mark 1", check=False)
        lab.lvsadm("-C")
        mark = (f"--add-mark 1 --match tcp:{vip}:21 --match tcp:{vip}:"
                f"{lvslab.FTP_PASSIVE_PORTS[0]}-{lvslab.FTP_PASSIVE_PORTS[1]}")
        print(f"  lvsadm {mark}")
        lab.lvsadm(mark)
        configure(lab, "-f 1", "-s rr", LVSADM_FLAGS)
        for client in lab.clients:
            cells = []
            for mode in ("epsv", "pasv"):
                r = lab.ftp(client, mode=mode, timeout=5, check=False)
                cells.append(f"{mode} {r.banner}/{r.body or f'FAILED({r.returncode})'}")
            print(f"{client:<4} ({lab.ip(client)}): " + " | ".join(cells))
        print("   passive data connections land on another real server, which has no "
              "listener on the announced port:")
        show("lvsadm -L -c -n", lab.lvsadm("-L", "-c", "-n").stdout)
        lab.lvsadm("-C")
        lab.lvsadm("--delete-mark 1", check=False)
    else:
        print("(NAT without persistence is the NAT FTP helper's case: not shown here)\n")
    return failures


def ssl_demo(lab):
    """TLS resumption through -p 60 on 443, then through plain rr."""
    failures = 0
    vip = lab.vip
    for opts, persistent in (("-s rr -p 60", True), ("-s rr", False)):
        print(f"== TLS 1.2 to {vip}:443 with {opts}: a new session, then resuming it "
              f"(openssl s_client -sess_out / -sess_in; s_server -no_ticket)")
        configure(lab, f"-t {vip}:443", opts, LVSADM_FLAGS)
        for client in lab.clients:
            sess = lab.log_dir / f"demo-{client}.sess"
            results = [lab.tls(client, sess_out=sess, check=False)]
            results += [lab.tls(client, sess_in=sess, check=False) for _ in range(3)]
            cells = [f"{r.server} {'Reused' if r.reused else 'New' if r.reused is False else '?'}"
                     for r in results]
            if persistent:
                failures += not (len({r.server for r in results}) == 1
                                 and all(r.reused for r in results[1:]))
            print(f"{client:<4} ({lab.ip(client)}): " + ", ".join(cells))
        print()
    print("   with persistence every connection of a client reaches one server and resumes;"
          "\n   without it a session resumes only when rr comes back to the server that "
          "made it\n")
    return failures


def restart_demo(lab, backup):
    """kill -9 of the controller (of the master, with a backup) breaks nothing."""
    vip = lab.vip
    print("== a persistent service; every client asks once; c1 holds a connection open")
    configure(lab, f"-t {vip}:80", "-s rr -p 600", LVSADM_FLAGS)
    held = lab.probe_background(lab.clients[0], "tcp-idle", vip, 80, "--sport", 45500,
                                "--idle", 12, "--timeout", 40)
    homes = {c: lab.curl(c, f"http://{vip}/").strip() for c in lab.clients}
    print("   " + ", ".join(f"{c} -> {s}" for c, s in homes.items()))
    show("lvsadm -L -c -n", lab.lvsadm("-L", "-c", "-n").stdout)
    if backup is None:
        print("== kill -9 of ryu-manager, then the same command again")
        lab.kill_controller()
        lab.restart_controller()
        listing = lab.lvsadm("-L", "-c", "-n").stdout
    else:
        print("== kill -9 of the master: the backup takes over")
        lab.kill_controller()
        backup.wait_takeover()
        listing = backup.lvsadm("-L", "-c", "-n").stdout
    show("lvsadm -L -c -n, read back from the switch", listing)
    out, _ = held.communicate(timeout=45)
    failures = int(held.returncode != 0 or out.strip() != homes[lab.clients[0]])
    print(f"   the connection held open across it: answered by {out.strip() or 'nothing'}")
    again = {c: lab.curl(c, f"http://{vip}/").strip() for c in reversed(lab.clients)}
    failures += sum(again[c] != homes[c] for c in lab.clients)
    print("   asked again, in reverse order: "
          + ", ".join(f"{c} -> {again[c]}" for c in lab.clients))
    failures += len(re.findall(r" NONE ", listing)) != len(lab.clients)
    print()
    return failures


def main(argv=None):
    args = parse_args(argv)
    problem = lvslab.environment_problem()
    if problem:
        print(f"lab.py: {problem}", file=sys.stderr)
        return 2
    # SIGTERM/SIGHUP stop the lab like Ctrl-C does
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    ports = BackupPorts() if args.ha else None
    rules_file = args.rules_file
    if rules_file is None and (args.ha or args.restart_demo):
        import tempfile
        rules_file = f"{tempfile.mkdtemp(prefix='lvslab-')}/lvs.rules"
    if args.controller_cmd == lvslab.SIMPLE_SWITCH_13_CMD:
        try:
            topo = lvslab.load_topology(args.topology)
        except lvslab.TopologyError as err:
            print(f"lab.py: {err}", file=sys.stderr)
            return 2
        # a connected fabric has a loop when it has as many links as switches
        if "switches" in topo and len(topo["links"]) >= len(topo["switches"]):
            print(f"lab.py: {args.topology}: its links make loops, and simple_switch_13 "
                  "floods: every broadcast would circle the fabric forever", file=sys.stderr)
            return 2
    try:
        lab = lvslab.Lab(args.topology, controller_cmd=args.controller_cmd,
                         of_port=args.of_port, rest_port=args.rest_port, log_dir=args.log_dir,
                         rules_file=rules_file, extra_args=master_args(ports) if ports else (),
                         # the CLI prints at Mininet's "output" level
                         mn_log_level="info" if args.verbose else "output" if args.cli
                         else "warning", ipv6=args.ipv6)
    except lvslab.TopologyError as err:
        print(f"lab.py: {err}", file=sys.stderr)
        return 2
    status = 0
    try:
        lab.start()
        describe(lab)
        backup = None
        if ports is not None:
            backup = BackupController(lab, ports)
            backup.start()
            print(f"backup controller: REST http://127.0.0.1:{ports.rest_port}, "
                  f"log {backup.log_path}\n")
        if args.apply_lvsadm:
            for command in lab.lvsadm_commands():
                print(f"lvsadm {command}")
                lab.lvsadm(command)
            print()
            if lab.ipv6:
                print("the IPv6 twin (VIP and servers by their IPv6 addresses; tunnel "
                      "servers stay IPv4 endpoints):")
                for command in lab.lvsadm_commands(ipv6=True):
                    print(f"lvsadm {command}")
                    lab.lvsadm(command)
                print()
        if args.ftp:
            lab.start_ftp_servers()
            print(f"FTP servers on port {lvslab.FTP_PORT} of every real server "
                  f"(logs {lab.log_dir}/<server>-ftp.log, files {lab.log_dir}/ftp/<server>/)")
        if args.tls:
            lab.start_tls_servers()
            print(f"TLS servers (openssl s_server -www -no_ticket) on port {lvslab.TLS_PORT} "
                  f"of every real server (certificates in {lab.log_dir}/tls/)")
        if args.ftp or args.tls:
            print()
        if args.demo:
            status = 1 if demo(lab, args.requests, director=args.apply_lvsadm) else 0
        if args.ftp_demo:
            status = 1 if ftp_demo(lab) else status
        if args.ssl_demo:
            status = 1 if ssl_demo(lab) else status
        if args.restart_demo:
            status = 1 if restart_demo(lab, backup) else status
        if args.cli:
            from mininet.cli import CLI
            CLI(lab.net)
        elif not (args.demo or args.ftp_demo or args.ssl_demo or args.restart_demo):
            print("lab running; Ctrl-C stops it")
            signal.pause()
    except KeyboardInterrupt:
        print("\ninterrupted")
        status = 130
    except lvslab.LabError as err:
        print(f"lab.py: {err}", file=sys.stderr)
        if lab.failure_dump:
            print(lab.failure_dump, file=sys.stderr)
        status = 1
    finally:
        lab.stop()
        if "stop" in lab.timings:
            print(f"lab {lab.name} stopped in {lab.timings['stop']:.2f}s; logs in {lab.log_dir}")
    return status


if __name__ == "__main__":
    sys.exit(main())
