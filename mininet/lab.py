"""Start an lvs_app lab from topologies/<name>.json.

    sudo .venv/bin/python mininet/lab.py nat --demo     # requests to the VIP, lvsadm -L
    sudo .venv/bin/python mininet/lab.py droute --cli   # Mininet's CLI (exit or Ctrl-D stops)
    sudo .venv/bin/python mininet/lab.py tunnel         # runs until Ctrl-C
    sudo .venv/bin/python mininet/lab.py nat --demo --controller-cmd simple_switch_13

The controller is ``ryu-manager lvs_app`` unless ``--controller-cmd`` says
otherwise (a command with the placeholders {venv} {repo} {of_port}
{rest_port}, or ``simple_switch_13`` for Ryu's learning switch).  The
topology's lvsadm commands are applied when the controller is lvs_app.
Everything started is stopped on exit, Ctrl-C or SIGTERM.
"""

import argparse
import collections
import signal
import sys

# This directory is sys.path[0] when run as a script; it has no __init__.py,
# so "import mininet" still finds the Mininet library.
import lvslab


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="lab.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("topology", help="a name in topologies/ (%s) or a JSON file"
                        % ", ".join(lvslab.topology_names()))
    parser.add_argument("--demo", action="store_true",
                        help="send requests from every client to the VIP, show who answered, "
                             "then lvsadm -L -n and lvsadm -L -c -n")
    parser.add_argument("--cli", action="store_true", help="drop into Mininet's CLI")
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
    return args


def describe(lab):
    topo = lab.topology
    print(f"lab {lab.name}: {topo['description']}\n")
    print(f"controller: {' '.join(lab.controller_cmd)}")
    print(f"  OpenFlow 127.0.0.1:{lab.of_port}, REST http://127.0.0.1:{lab.rest_port}, "
          f"log {lab.controller_log_path}")
    print(f"switch {lab.switch_name} (dpid {topo['switch']['dpid']}, tunnel source "
          f"{topo['switch']['tunnel_ip']} on LOCAL, {lvslab.VXLAN_PORT_NAME} = port "
          f"{lvslab.VXLAN_OFPORT}); VIP {topo['vip']} (MAC {topo['vip_mac']})")
    for spec in topo["clients"] + topo["servers"]:
        role = f"real server, {spec['method']}" if "method" in spec else "client"
        print(f"  {spec['name']:<5} {spec['ip']:<12} {spec['mac']}  port {lab.port_of(spec['name'])}"
              f"  {role}")
    timings = ", ".join(f"{k} {v:.2f}s" for k, v in lab.timings.items())
    print(f"started in {lab.timings['start']:.2f}s ({timings})\n")


def show(title, text):
    print(f"== {title}")
    print(text.rstrip() + "\n")


def demo(lab, requests, director):
    """Requests to the VIP (with the director) or to every real address (without)."""
    failures = 0
    if not director:
        loss = lab.pingall()
        show("pingall", f"{loss:g}% lost")
        failures += loss > 0
        for client in lab.clients:
            answers = []
            for server in lab.servers:
                try:
                    answers.append(lab.curl(client, f"http://{lab.ip(server)}/"))
                except lvslab.CommandError as err:
                    answers.append(f"FAILED({err.returncode})")
                    failures += 1
            print(f"{client} -> real servers: {' '.join(answers)}")
        return failures
    url = f"http://{lab.vip}/"
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
        print(f"{client:<4} ({lab.ip(client)}): {' '.join(answers)}   "
              f"[{', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}]")
    print()
    for args in (["-L", "-n"], ["-L", "-c", "-n"]):
        proc = lab.lvsadm(*args, check=False)
        show("lvsadm " + " ".join(args), proc.stdout + proc.stderr)
        failures += proc.returncode != 0
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
    lab = lvslab.Lab(args.topology, controller_cmd=args.controller_cmd,
                     of_port=args.of_port, rest_port=args.rest_port, log_dir=args.log_dir,
                     rules_file=args.rules_file,
                     # the CLI prints at Mininet's "output" level
                     mn_log_level="info" if args.verbose else "output" if args.cli else "warning")
    status = 0
    try:
        lab.start()
        describe(lab)
        if args.apply_lvsadm:
            for command in lab.topology["lvsadm"]:
                print(f"lvsadm {command}")
                lab.lvsadm(command)
            print()
        if args.demo:
            status = 1 if demo(lab, args.requests, director=args.apply_lvsadm) else 0
        if args.cli:
            from mininet.cli import CLI
            CLI(lab.net)
        elif not args.demo:
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
