"""Service lookup: which virtual service a packet to a VIP belongs to.

An index over the service table, rebuilt whenever the table changes, that
answers in IPVS's order (``ip_vs_service_find``): firewall mark, exact
protocol/VIP/port, the FTP fallback (data connections to a port-21 service's
VIP on port 20 or an unprivileged port), then the VIP's port-0 service.
"""

from lvs_app.model import FTP_CONTROL, FTP_DATA, UNPRIVILEGED


class ServiceIndex:
    """Lookup tables for the services of one ServiceTable (both families:
    addresses are integers, see packet.is_v6)."""

    def __init__(self, table):
        exact, ftp_vips, vips = {}, set(), {}
        for key, service in table.services.items():
            if key.is_fwmark:
                continue
            vip = int(key.address)
            exact[(key.protocol, vip, key.port)] = service
            if key.protocol == "tcp" and key.port == FTP_CONTROL:
                ftp_vips.add(vip)
            vips.setdefault(vip, set()).add(key.protocol)
        marks = []
        for key, service in table.services.items():
            if not key.is_fwmark:
                continue
            for match in table.marks[key.fwmark].matches:
                marks.append((match, service))
                vips.setdefault(int(match.address), set()).add(match.protocol)
        self.exact = exact           # (proto, vip, port) -> VirtualService
        self.ftp_vips = ftp_vips     # VIPs with a tcp port-21 service
        self.marks = marks           # [(MarkMatch, VirtualService)]
        self.vips = vips             # vip -> {"tcp", "udp"}

    def find(self, proto, vip, port):
        """(service, via_ftp_fallback) for a packet, or (None, False)."""
        for match, service in self.marks:
            if (match.protocol == proto and int(match.address) == vip
                    and match.port_min <= port <= match.port_max):
                return service, False
        service = self.exact.get((proto, vip, port))
        if service is not None:
            return service, False
        if (proto == "tcp" and vip in self.ftp_vips
                and (port == FTP_DATA or port >= UNPRIVILEGED)):
            return self.exact[("tcp", vip, FTP_CONTROL)], True
        return self.exact.get((proto, vip, 0)), False

    def marks_at(self, proto, vip, port):
        """Firewall-mark services one of whose matches holds proto/vip/port
        (``port`` None: any port)."""
        return [service for match, service in self.marks
                if match.protocol == proto and int(match.address) == vip
                and (port is None or match.port_min <= port <= match.port_max)]
