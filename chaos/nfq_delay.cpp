// mcpmesh-nfq-delay: holds every packet an NFQUEUE rule hands it for a fixed delay (plus an
// optional uniform jitter), then lets it go. The chaos harness's `delay` nemesis: this kernel
// has no netem, but nftables' `queue` statement (iptables' NFQUEUE target) works, so a packet
// can wait in user space instead.
//
//   mcpmesh-nfq-delay --queue N --delay-ms D [--jitter-ms J] [--seed S] [--max-pending P]
//
// Runs in the network namespace whose rules queue to N (`ip netns exec NS ...`). Prints
// `ready queue N` on stdout once bound (the harness adds the rule only then, and the rule uses
// `bypass`, so packets pass unqueued whenever no program is bound). On SIGTERM or SIGINT it lets
// every held packet go at once, prints one line of counts and exits 0.
//
// Bounds: at most --max-pending packets are held (more are accepted at once and counted as
// `overflow`); the kernel queue is capped at the same figure and fails open (a full queue lets
// packets through rather than dropping them). Only packet metadata is copied to user space.
//
// Single-threaded: one poll() loop owns the queue handle and the release heap.
#include <arpa/inet.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <queue>
#include <random>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  unsigned queue = 0;
  bool have_queue = false;
  double delay_ms = -1;
  double jitter_ms = 0;
  std::uint64_t seed = 1;
  std::size_t max_pending = 65536;
};

struct Held {
  Clock::time_point release;
  std::uint32_t packet_id;
  bool operator>(const Held& o) const { return release > o.release; }
};

struct Counts {
  std::uint64_t delayed = 0;
  std::uint64_t overflow = 0;
  std::uint64_t verdict_errors = 0;
};

struct State {
  Options opt;
  std::mt19937_64 rng;
  std::priority_queue<Held, std::vector<Held>, std::greater<>> heap;
  Counts counts;
  nfq_q_handle* queue = nullptr;
};

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "mcpmesh-nfq-delay: %s\n"
               "usage: mcpmesh-nfq-delay --queue N --delay-ms D [--jitter-ms J] [--seed S] "
               "[--max-pending P]\n",
               why);
  std::exit(2);
}

bool parse_number(const char* s, double& out) {
  char* end = nullptr;
  errno = 0;
  out = std::strtod(s, &end);
  return errno == 0 && end != s && *end == '\0';
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") usage("holds queued packets for a delay");
    if (i + 1 >= argc) usage(("missing value for " + a).c_str());
    double v = 0;
    if (!parse_number(argv[++i], v)) usage(("not a number: " + a).c_str());
    if (a == "--queue") {
      if (v < 0 || v > 65535 || v != static_cast<unsigned>(v)) usage("--queue: 0..65535");
      o.queue = static_cast<unsigned>(v);
      o.have_queue = true;
    } else if (a == "--delay-ms") {
      if (v < 0 || v > 10000) usage("--delay-ms: 0..10000");
      o.delay_ms = v;
    } else if (a == "--jitter-ms") {
      if (v < 0 || v > 10000) usage("--jitter-ms: 0..10000");
      o.jitter_ms = v;
    } else if (a == "--seed") {
      o.seed = static_cast<std::uint64_t>(v);
    } else if (a == "--max-pending") {
      if (v < 1 || v > 1'000'000) usage("--max-pending: 1..1000000");
      o.max_pending = static_cast<std::size_t>(v);
    } else {
      usage(("unknown option " + a).c_str());
    }
  }
  if (!o.have_queue) usage("--queue is required");
  if (o.delay_ms < 0) usage("--delay-ms is required");
  return o;
}

void accept_packet(State& s, std::uint32_t id) {
  if (nfq_set_verdict(s.queue, id, NF_ACCEPT, 0, nullptr) < 0) ++s.counts.verdict_errors;
}

// Called by nfq_handle_packet for each queued packet: schedule its release.
int on_packet(nfq_q_handle*, nfgenmsg*, nfq_data* nfa, void* data) {
  auto& s = *static_cast<State*>(data);
  auto* ph = nfq_get_msg_packet_hdr(nfa);
  if (ph == nullptr) return 0;
  std::uint32_t id = ntohl(ph->packet_id);
  if (s.heap.size() >= s.opt.max_pending) {
    ++s.counts.overflow;
    accept_packet(s, id);
    return 0;
  }
  double ms = s.opt.delay_ms;
  if (s.opt.jitter_ms > 0) {
    std::uniform_real_distribution<double> jitter(-s.opt.jitter_ms, s.opt.jitter_ms);
    ms = std::max(0.0, ms + jitter(s.rng));
  }
  auto release = Clock::now() + std::chrono::microseconds(static_cast<std::int64_t>(ms * 1000));
  s.heap.push({release, id});
  ++s.counts.delayed;
  return 0;
}

void release_due(State& s, Clock::time_point now) {
  while (!s.heap.empty() && s.heap.top().release <= now) {
    accept_packet(s, s.heap.top().packet_id);
    s.heap.pop();
  }
}

int poll_timeout_ms(const State& s) {
  constexpr int kIdleMs = 200;  // to notice a signal when nothing is held
  if (s.heap.empty()) return kIdleMs;
  auto wait =
      std::chrono::duration_cast<std::chrono::microseconds>(s.heap.top().release - Clock::now());
  if (wait.count() <= 0) return 0;
  return static_cast<int>(std::min<std::int64_t>(kIdleMs, (wait.count() + 999) / 1000));
}

}  // namespace

int main(int argc, char** argv) {
  State s;
  s.opt = parse_args(argc, argv);
  s.rng.seed(s.opt.seed);

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  nfq_handle* h = nfq_open();
  if (h == nullptr) {
    std::perror("mcpmesh-nfq-delay: nfq_open");
    return 1;
  }
  s.queue = nfq_create_queue(h, static_cast<std::uint16_t>(s.opt.queue), &on_packet, &s);
  if (s.queue == nullptr) {
    std::fprintf(stderr, "mcpmesh-nfq-delay: cannot bind queue %u (taken, or no permission)\n",
                 s.opt.queue);
    nfq_close(h);
    return 1;
  }
  if (nfq_set_mode(s.queue, NFQNL_COPY_META, 0) < 0) {
    std::perror("mcpmesh-nfq-delay: nfq_set_mode");
    return 1;
  }
  nfq_set_queue_maxlen(s.queue, static_cast<std::uint32_t>(s.opt.max_pending));
  nfq_set_queue_flags(s.queue, NFQA_CFG_F_FAIL_OPEN, NFQA_CFG_F_FAIL_OPEN);
  int fd = nfq_fd(h);
  // A held packet stays in the kernel: a large receive buffer keeps bursts from being lost.
  int rcvbuf = 8 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);

  std::printf("ready queue %u\n", s.opt.queue);
  std::fflush(stdout);

  std::vector<char> buf(1 << 16);
  std::uint64_t recv_errors = 0;
  while (!g_stop) {
    pollfd p{fd, POLLIN, 0};
    int n = poll(&p, 1, poll_timeout_ms(s));
    if (n > 0 && (p.revents & POLLIN)) {
      // Drain what is readable without blocking.
      for (;;) {
        ssize_t r = recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
        if (r > 0) {
          nfq_handle_packet(h, buf.data(), static_cast<int>(r));
          continue;
        }
        if (r < 0 && errno == ENOBUFS) {  // the kernel dropped messages for us: keep going
          ++recv_errors;
          continue;
        }
        break;
      }
    }
    release_due(s, Clock::now());
  }
  release_due(s, Clock::time_point::max());
  std::printf("delayed %llu overflow %llu verdict_errors %llu recv_errors %llu\n",
              static_cast<unsigned long long>(s.counts.delayed),
              static_cast<unsigned long long>(s.counts.overflow),
              static_cast<unsigned long long>(s.counts.verdict_errors),
              static_cast<unsigned long long>(recv_errors));
  std::fflush(stdout);
  nfq_destroy_queue(s.queue);
  nfq_close(h);
  return 0;
}
