package controller

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/go-logr/logr"

	"github.com/incuslb/incuslb/specs"
)

// forgetNeighbours deletes neighbour (ARP) entries in the LB container: of
// addrs, or every entry when addrs is nil. An address Incus hands out
// again, to a new instance with a new MAC, may still have an entry from
// its last owner: the container's kernel keeps sending to the old MAC until
// the entry goes stale and fails its probes, some 5 to 15 s, and the new
// member's first checks time out meanwhile. So the entry of an address is
// deleted as its member leaves (off the path of any join: an exec costs
// 100 ms or more), and every entry once per LB per controller process (a
// member may have left while no controller ran); the first packet to the
// address then resolves it afresh.
//
// IPv6 addresses are skipped: a member's IPv6 address on the bridge comes
// from SLAAC, derived from its MAC, so a new instance (a new MAC) does not
// take an old one's address, and an address written by hand that does is
// resolved again by neighbour discovery. Only IPv4 entries are deleted.
//
// It speaks rtnetlink through perl (perl-base is Essential; iproute2 is
// not in a minimal image). Failing to forget only delays a join, so it is
// reported, never fatal. It returns how many entries it deleted.
func (a *Applier) forgetNeighbours(ctx context.Context, lb *specs.LoadBalancer, addrs []string) (int, error) {
	args := []string{"perl", "-e", forgetNeighboursScript}
	if addrs == nil {
		args = append(args, "all")
	}
	for _, s := range addrs {
		if ip := net.ParseIP(s).To4(); ip != nil {
			args = append(args, ip.String())
		}
	}
	if len(args) == 3 {
		return 0, nil
	}
	in := lb.Spec.Instance
	res, err := a.Incus.Exec(ctx, in.Project, in.Name, args, nil)
	if err != nil {
		return 0, err
	}
	if res.Code != 0 {
		return 0, fmt.Errorf("forgetting neighbour entries failed (exit %d): %s", res.Code, tail(res.Output(), 3))
	}
	var n int
	_, _ = fmt.Sscanf(strings.TrimSpace(string(res.Stdout)), "%d", &n)
	return n, nil
}

// forgetNeighbours logs what forgetNeighbours did.
func (a *Applier) forgetAndLog(ctx context.Context, lb *specs.LoadBalancer, addrs []string, log logr.Logger) bool {
	n, err := a.forgetNeighbours(ctx, lb, addrs)
	if err != nil {
		log.Info("could not forget neighbour entries; a member at a reused address may join late", "err", err.Error())
		return false
	}
	if n > 0 {
		log.Info("forgot neighbour entries", "count", n, "addresses", strings.Join(addrs, " "))
	}
	return true
}

// forgetNeighboursScript sends RTM_DELNEIGH for every address (argv; "all":
// every IPv4 address in /proc/net/arp) on every interface, and counts the
// entries the kernel acknowledged.
// struct ndmsg is family, pad, pad, ifindex, state, flags, type; NDA_DST is
// attribute 1.
const forgetNeighboursScript = `
use strict; use Socket;
socket(my $s, 16, 3, 0) or die "netlink: $!\n";      # AF_NETLINK, SOCK_RAW, NETLINK_ROUTE
my $kernel = pack("S S L L", 16, 0, 0, 0);
my @if;
opendir(my $d, "/sys/class/net") or die "/sys/class/net: $!\n";
for my $n (readdir $d) {
  next if $n =~ /^\./ || $n eq "lo";
  open(my $f, "<", "/sys/class/net/$n/ifindex") or next;
  my $i = <$f>; chomp $i; push @if, $i if $i =~ /^\d+$/;
}
my @addrs = @ARGV;
if (@addrs && $addrs[0] eq "all") {
  open(my $t, "<", "/proc/net/arp") or die "/proc/net/arp: $!\n";
  @addrs = map { (split)[0] } grep { /^\d+\.\d+\.\d+\.\d+\s/ } <$t>;
}
my ($seq, $gone) = (0, 0);
for my $a (@addrs) {
  my $ip = inet_aton($a) or next;
  for my $i (@if) {
    my $body = pack("C C S l S C C", 2, 0, 0, $i, 0, 0, 0) . pack("S S", 8, 1) . $ip;
    send($s, pack("L S S L L", 16 + length($body), 29, 5, ++$seq, 0) . $body, 0, $kernel) or die "send: $!\n";
    my $buf = ""; defined recv($s, $buf, 4096, 0) or die "recv: $!\n";
    my ($len, $type) = unpack("L S", $buf);
    $gone++ if $type == 2 && unpack("l", substr($buf, 16, 4)) == 0;   # NLMSG_ERROR, error 0: deleted
  }
}
print "$gone\n";
`
