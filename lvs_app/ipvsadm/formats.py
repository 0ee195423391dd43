"""ipvsadm's output formats over the JSON forms of the table.

``-L -n`` and its variants (``--stats``, ``--rate``, ``--exact``,
``--thresholds``, ``--persistent-conn``, ``--tun-info``, ``--nosort``), the
header, ``-L -c -n``, ``--timeout`` and ``--list-marks``, byte for byte as
ipvsadm prints the kernel's table: the CLI formats what the REST API
returns (``VirtualService.to_dict()`` ...), so the input is dicts, not model
objects.  Listing order is libipvs's comparators under glibc's qsort, quirks
included, because a listing that sorts differently is not ipvsadm's.
"""

import ipaddress
import socket
import struct

from lvs_app import model
from lvs_app.ipvsadm.commands import Command
from lvs_app.model import CONN_TAB_SIZE, IPVS_VERSION
from lvs_app.packet import PROTO_TCP, PROTO_UDP

_AF_INET, _AF_INET6 = 2, 10
_PROTO_NUM = {"tcp": PROTO_TCP, "udp": PROTO_UDP, "fwmark": 0}


def _ntop(text):
    """glibc inet_ntop() of an address string (differs from Python for ::ffff:a.b.c.d)."""
    addr = ipaddress.ip_address(str(text).strip("[]"))
    if addr.version == 4:
        return str(addr)
    words = struct.unpack("!8H", addr.packed)
    best_base, best_len, cur_base, cur_len = -1, 0, -1, 0
    for i, word in enumerate(words):
        if word == 0:
            if cur_base == -1:
                cur_base, cur_len = i, 1
            else:
                cur_len += 1
            if cur_len > best_len:
                best_base, best_len = cur_base, cur_len
        else:
            cur_base, cur_len = -1, 0
    if best_len < 2:
        best_base = -1
    out = ""
    for i in range(8):
        if best_base != -1 and best_base <= i < best_base + best_len:
            if i == best_base:
                out += ":"
            continue
        if i:
            out += ":"
        if i == 6 and best_base == 0 and (best_len == 6 or (best_len == 5
                                                          and words[5] == 0xFFFF)):
            out += socket.inet_ntoa(addr.packed[12:])
            break
        out += f"{words[i]:x}"
    if best_base != -1 and best_base + best_len == 8:
        out += ":"
    return out


def _is_v6(text):
    return ":" in str(text)


def _addrport(address, port):
    """ipvsadm's numeric addrport_to_anyname: ``a.b.c.d:p`` / ``[v6]:p``."""
    if _is_v6(address):
        return f"[{_ntop(address)}]:{port}"
    return f"{_ntop(address)}:{port}"


def _c_int(value):
    """A C unsigned difference read back as a 32-bit int (ipvsadm's comparators)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _words(address):
    """The address as the four 32-bit words of union nf_inet_addr."""
    if address is None:
        return (0, 0, 0, 0)
    addr = ipaddress.ip_address(str(address).strip("[]"))
    packed = addr.packed if addr.version == 6 else addr.packed + bytes(12)
    return struct.unpack("!4I", packed)


def _cmp_addr(af6, a, b):
    wa, wb = _words(a), _words(b)
    if af6:
        r = 0
        for i in range(4):
            r = _c_int(wa[i] - wb[i])
            if r:
                break
        return r
    return _c_int(wa[0] - wb[0])


def _svc_af(svc):
    return svc.get("af") or (6 if _is_v6(svc.get("address") or "") else 4)


def _cmp_services(s1, s2):
    """libipvs ipvs_cmp_services(), wrap-around of int differences included."""
    r = _c_int((s1.get("fwmark") or 0) - (s2.get("fwmark") or 0))
    if r:
        return r
    af1 = _AF_INET6 if _svc_af(s1) == 6 else _AF_INET
    af2 = _AF_INET6 if _svc_af(s2) == 6 else _AF_INET
    if af1 != af2:
        return af1 - af2
    # the kernel does not report the protocol of an fwmark service
    p1 = 0 if s1.get("fwmark") else _PROTO_NUM.get(s1.get("protocol"), 0)
    p2 = 0 if s2.get("fwmark") else _PROTO_NUM.get(s2.get("protocol"), 0)
    if p1 != p2:
        return p1 - p2
    r = _cmp_addr(af1 == _AF_INET6, s1.get("address"), s2.get("address"))
    if r:
        return r
    return (s1.get("port") or 0) - (s2.get("port") or 0)


def _cmp_dests(d1, d2):
    """libipvs ipvs_cmp_dests()."""
    r = _cmp_addr(_is_v6(d1["address"]), d1["address"], d2["address"])
    if r:
        return r
    return (d1.get("port") or 0) - (d2.get("port") or 0)


def _msort(items, cmp):
    """glibc qsort()'s merge sort, so that an inconsistent comparator gives
    the same order as in ipvsadm (first half n/2, ties from the left)."""
    items = list(items)
    if len(items) <= 1:
        return items
    n1 = len(items) // 2
    b1, b2 = _msort(items[:n1], cmp), _msort(items[n1:], cmp)
    out, i, j = [], 0, 0
    while i < len(b1) and j < len(b2):
        if cmp(b1[i], b2[j]) <= 0:
            out.append(b1[i])
            i += 1
        else:
            out.append(b2[j])
            j += 1
    out.extend(b1[i:])
    out.extend(b2[j:])
    return out


def sort_services(services):
    """Services in ipvsadm's listing order (ipvs_cmp_services with glibc's qsort)."""
    return _msort(services, _cmp_services)


def _kernel_order(servers):
    # The kernel lists a service's servers newest first; the JSON form may carry
    # "seq" (order of addition) to reproduce that, else its own order is kept.
    if all("seq" in s for s in servers):
        return sorted(servers, key=lambda s: -s["seq"])
    return list(servers)


def sort_servers(servers, nosort=False):
    """Real servers in ipvsadm's listing order (ipvs_cmp_dests), or kernel order."""
    servers = _kernel_order(servers)
    return servers if nosort else _msort(servers, _cmp_dests)


def print_largenum(value, exact=False):
    """ipvsadm's print_largenum(): 9 columns, K/M/G/T above 1e8 unless --exact."""
    value = int(value or 0)
    if exact:
        text = str(value)
        width = 9 if len(text) <= 8 else len(text) + 1
        return text.rjust(width)
    if value < 100000000:
        return f"{value:9d}"
    if value < 1000000000:
        return f"{value // 1000:8d}K"
    if value < 100000000000:
        return f"{value // 1000000:8d}M"
    if value < 100000000000000:
        return f"{value // 1000000000:8d}G"
    return f"{value // 1000000000000:8d}T"


def _flag_bits(svc):
    bits = 0
    for name in svc.get("sched_flags") or ():
        bits |= model.SCHED_FLAG_BITS.get(name, 0)
    return bits


def _sched_flags_text(svc):
    """ipvsadm's print_sched_flags(): names follow the scheduler, not the request."""
    bits = _flag_bits(svc)
    sched = svc.get("scheduler")
    # sh and mh name their own bits (sh-fallback, sh-port), and print no other
    prefix = f"{sched}-" if sched in ("sh", "mh") else "flag-"
    names = [name for name, bit in sorted(model.SCHED_FLAG_BITS.items(), key=lambda nb: nb[1])
             if name.startswith(prefix) and bits & bit]
    return ",".join(names)


def _netmask_suffix(svc, word):
    """`` mask 255.255.255.0`` / `` -M 64`` when not a single address."""
    mask = svc.get("netmask")
    if mask is None:
        return ""
    mask = str(mask)
    if _svc_af(svc) == 6:
        return "" if mask == "128" else f" {word} {int(mask)}"
    if mask in ("255.255.255.255", "32"):
        return ""
    if mask.isdigit():               # a prefix length from another producer
        mask = str(ipaddress.IPv4Address(model.prefix_mask(4, int(mask))))
    return f" {word} {mask}"


def _svc_name(svc, rule=False):
    if svc.get("protocol") == "fwmark" or svc.get("fwmark"):
        v6 = _svc_af(svc) == 6
        if rule:
            return f"-f {svc['fwmark']}" + (" -6" if v6 else "")
        return f"FWM  {svc['fwmark']}" + (" IPv6" if v6 else "")
    vname = _addrport(svc["address"], svc.get("port") or 0)
    if rule:
        return f"{'-t' if svc['protocol'] == 'tcp' else '-u'} {vname}"
    name = f"{svc['protocol'].upper():<4s} {vname}"
    return name if _svc_af(svc) == 6 else name[:33]


def _tun_info(server):
    if server.get("method") != "tunnel":
        return None
    return server.get("tun_type") or "vxlan"


def _opts(opts):
    if opts is None:
        return set()
    if isinstance(opts, Command):
        return opts.list_options()
    if isinstance(opts, dict):
        return {k.replace("-", "_") for k, v in opts.items() if v}
    return {str(o).replace("-", "_") for o in opts}


def _title(o):
    if "stats" in o:
        return (f"{'Prot LocalAddress:Port':<33s} {'Conns':>8s} {'InPkts':>8s} "
                f"{'OutPkts':>8s} {'InBytes':>8s} {'OutBytes':>8s}\n"
                "  -> RemoteAddress:Port\n")
    if "rate" in o:
        return (f"{'Prot LocalAddress:Port':<33s} {'CPS':>8s} {'InPPS':>8s} "
                f"{'OutPPS':>8s} {'InBPS':>8s} {'OutBPS':>8s}\n"
                "  -> RemoteAddress:Port\n")
    if "thresholds" in o:
        return (f"{'Prot LocalAddress:Port':<33s} {'Uthreshold':<10s} {'Lthreshold':<10s} "
                f"{'ActiveConn':<10s} {'InActConn':<10s}\n"
                "  -> RemoteAddress:Port\n")
    if "persistent_conn" in o:
        return (f"{'Prot LocalAddress:Port':<33s} {'Weight':<9s} {'PersistConn':<11s} "
                f"{'ActiveConn':<10s} {'InActConn':<10s}\n"
                "  -> RemoteAddress:Port\n")
    if "tun_info" in o:
        return ("Prot LocalAddress:Port Scheduler Flags\n"
                "  -> RemoteAddress:Port           Forward TunnelInfo    Weight "
                "ActiveConn InActConn\n")
    return ("Prot LocalAddress:Port Scheduler Flags\n"
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")


def _counters(block, names):
    block = block or {}
    return [int(block.get(n) or 0) for n in names]


_STATS = ("conns", "inpkts", "outpkts", "inbytes", "outbytes")
_RATES = ("cps", "inpps", "outpps", "inbps", "outbps")


def _service_lines(svc, o):
    exact = "exact" in o
    name = _svc_name(svc)
    if "stats" in o:
        line = f"{name:<33s}" + "".join(print_largenum(v, exact)
                                       for v in _counters(svc.get("stats"), _STATS))
    elif "rate" in o:
        line = f"{name:<33s}" + "".join(print_largenum(v, exact)
                                       for v in _counters(svc.get("rates"), _RATES))
    else:
        line = f"{name} {svc.get('scheduler')}"
        if _flag_bits(svc):
            line += f" ({_sched_flags_text(svc)})"
        if svc.get("persistent"):
            line += f" persistent {svc.get('timeout') or 0}"
            line += _netmask_suffix(svc, "mask")
            if svc.get("pe"):
                line += f" pe {svc['pe']}"
        if svc.get("ops"):
            line += " ops"
    lines = [line + "\n"]
    for dest in sort_servers(svc.get("servers") or [], "nosort" in o):
        dname = _addrport(dest["address"], dest.get("port") or 0)
        if not _is_v6(dest["address"]):
            dname = dname[:28]
        weight = int(dest.get("weight") or 0)
        active = int(dest.get("activeconns") or 0)
        inact = int(dest.get("inactconns") or 0)
        forward = dest.get("forward") or model.FORWARD_NAMES.get(dest.get("method"), "")
        if "stats" in o:
            row = f"  -> {dname:<28s}" + "".join(
                print_largenum(v, exact) for v in _counters(dest.get("stats"), _STATS))
        elif "rate" in o:
            cps, inpps, outpps, inbps, outbps = _counters(dest.get("rates"), _RATES)
            row = (f"  -> {dname:<28s} {cps:8d} {inpps:8d} {outpps:8d}"
                   + print_largenum(inbps, exact) + print_largenum(outbps, exact))
        elif "thresholds" in o:
            row = (f"  -> {dname:<28s} {int(dest.get('u_threshold') or 0):<10d} "
                   f"{int(dest.get('l_threshold') or 0):<10d} {active:<10d} {inact:<10d}")
        elif "persistent_conn" in o:
            row = (f"  -> {dname:<28s} {weight:<9d} {int(dest.get('persistconns') or 0):<11d} "
                   f"{active:<10d} {inact:<10d}")
        elif "tun_info" in o:
            info = _tun_info(dest) or "n/a"
            row = (f"  -> {dname:<28s} {forward:<7s} {info:<13s} {weight:<6d} "
                   f"{active:<10d} {inact:<10d}")
        else:
            row = f"  -> {dname:<28s} {forward:<7s} {weight:<6d} {active:<10d} {inact:<10d}"
        lines.append(row + "\n")
    return lines


def format_header(version=IPVS_VERSION, size=CONN_TAB_SIZE):
    """The first line of ``ipvsadm -L``: the IPVS version and the connection table size."""
    return f"IP Virtual Server version {version} (size={size})\n"


def format_list(services, opts=None, header=True, version=IPVS_VERSION, size=CONN_TAB_SIZE):
    """``ipvsadm -L -n`` [--stats|--rate|--exact|--thresholds|--persistent-conn|
    --tun-info|--nosort] over service dicts.

    ``opts`` is a Command, a dict of flags or an iterable of flag names
    (``stats``, ``rate``, ``exact``, ``thresholds``, ``persistent_conn``,
    ``tun_info``, ``nosort``).  ``header=False`` is the single-service listing
    (``-L -t VIP:port``), which ipvsadm prints without the version line.
    """
    o = _opts(opts)
    out = [format_header(version, size)] if header else []
    out.append(_title(o))
    ordered = list(services) if "nosort" in o else sort_services(services)
    for svc in ordered:
        out.extend(_service_lines(svc, o))
    return "".join(out)


def format_connections(conns, persistent_conn=False):
    """``ipvsadm -L -c -n`` [--persistent-conn] over connection dicts.

    Keys: protocol ("TCP"/"UDP"/"IP"), expire (seconds), state, client, cport,
    vip, vport, server, dport, and optionally pe_name/pe_data.
    """
    out = ["IPVS connection entries\n"]
    if persistent_conn:
        out.append(f"pro expire {'state':<11s} {'source':<18s} {'virtual':<18s} "
                   f"{'destination':<18s} {'pe name':<16s} pe_data\n")
    else:
        out.append(f"pro expire {'state':<11s} {'source':<18s} {'virtual':<18s} "
                   "destination\n")
    for conn in conns:
        expire = max(int(conn.get("expire") or 0), 0)
        expire_str = f"{expire // 60:02d}:{expire % 60:02d}"
        cname = _addrport(conn["client"], conn.get("cport") or 0)
        vname = _addrport(conn["vip"], conn.get("vport") or 0)
        dname = _addrport(conn["server"], conn.get("dport") or 0)
        proto = str(conn.get("protocol") or "IP")
        state = str(conn.get("state") or "NONE")
        if persistent_conn and conn.get("pe_name") and conn.get("pe_data"):
            out.append(f"{proto:<3s} {expire_str:<6s} {state:<11s} {cname:<18s} "
                       f"{vname:<18s} {dname:<16s} {conn['pe_name']:<18s} "
                       f"{conn['pe_data']}\n")
        else:
            out.append(f"{proto:<3s} {expire_str:<6s} {state:<11s} {cname:<18s} "
                       f"{vname:<18s} {dname}\n")
    return "".join(out)


def format_timeout(timeouts):
    """``ipvsadm -L --timeout``."""
    return ("Timeout (tcp tcpfin udp): "
            f"{int(timeouts['tcp'])} {int(timeouts['tcpfin'])} {int(timeouts['udp'])}\n")


def format_marks(marks):
    """``lvsadm --list-marks`` (an lvs_app extension): each mark and its matches."""
    out = ["FWM  Name\n  -> Match\n"]
    for mark in sorted(marks or (), key=lambda m: m["mark"]):
        line = f"FWM  {mark['mark']}"
        if mark.get("name"):
            line += f" {mark['name']}"
        out.append(line + "\n")
        out.extend(f"  -> {m}\n" for m in mark.get("matches") or ())
    return "".join(out)


def _age(seconds):
    return "-" if seconds is None else f"{seconds:.1f}s"


def format_health(doc):
    """``lvsadm --list-health`` (an lvs_app extension): every keepalived
    virtual_server, its real servers and their checkers, as the health
    checks see them (``GET /ipvs/health``)."""
    out = [f"Health checks from {doc.get('source') or '(no health-check address)'}\n"]
    for vs in doc.get("virtual_servers") or ():
        line = (f"VS {vs['virtual_server']} ({vs['origin']}): quorum {vs['quorum_state']}, "
                f"alive weight {vs['alive_weight']}, quorum {vs['quorum']}"
                f" hysteresis {vs['hysteresis']}")
        if vs.get("sorry_server"):
            state = "in use" if vs.get("sorry_server_active") else "standing by"
            line += f", sorry server {vs['sorry_server']} {state}"
        out.append(line + "\n")
        for rs in vs.get("real_servers") or ():
            out.append(f"  -> {rs['address']}:{rs['port']} {rs['state']} for "
                       f"{_age(rs.get('for_seconds'))} weight {rs['weight']}\n")
            for check in rs.get("checkers") or ():
                out.append(f"       {check['checker']} {check['target']} {check['state']} for "
                           f"{_age(check.get('for_seconds'))}: {check['last_result']} "
                           f"({_age(check.get('last_run_seconds_ago'))} ago)\n")
    return "".join(out)
