//! A modified rsync client for the hostile-client tests, shared by
//! `tests/hostile_rsync.rs` and `tests/compat.rs`.

/// A modified client, used as rsync's `--rsh`: runs ssh (the rest of its
/// arguments) and feeds it what rsync writes, with `RELAY_FROM` replaced by
/// `RELAY_TO` (same length, so the framing holds), and going silent for
/// good — connection open, nothing sent — after `RELAY_STALL` bytes.
/// (Perl, because perl-base is on every Debian system.)
pub const RELAY: &str = r#"
use strict;
my ($from, $to, $stall) = ($ENV{RELAY_FROM} // "", $ENV{RELAY_TO} // "", $ENV{RELAY_STALL} // -1);
pipe(my $r, my $w) or die "relay: pipe: $!";
my $ssh = fork // die "relay: fork: $!";
if ($ssh == 0) {
    close $w;
    open(STDIN, "<&", $r) or die "relay: $!";
    exec { $ARGV[0] } @ARGV or die "relay: cannot run $ARGV[0]: $!";
}
close $r;
my $copier = fork // die "relay: fork: $!";
if ($copier == 0) {
    binmode STDIN;
    binmode $w;
    my ($buf, $sent) = ("", 0);
    while (sysread(STDIN, $buf, 65536)) {
        $buf =~ s/\Q$from\E/$to/g if length $from;
        if ($stall >= 0 && $sent + length($buf) > $stall) {
            syswrite($w, substr($buf, 0, $stall - $sent));
            sleep 3600;
        }
        syswrite($w, $buf) or last;
        $sent += length $buf;
    }
    exit 0;
}
close $w;
waitpid($ssh, 0);
my $status = $? >> 8;
kill 'KILL', $copier;
waitpid($copier, 0);
exit $status;
"#;
