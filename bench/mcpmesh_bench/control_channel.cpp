#include "bench/mcpmesh_bench/control_channel.hpp"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <stdexcept>
#include <system_error>
#include <vector>

namespace mcpmesh::bench {

ControlChannel::ControlChannel() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  if (int rc = pthread_sigmask(SIG_BLOCK, &set, nullptr); rc != 0) {
    throw std::system_error(rc, std::generic_category(), "pthread_sigmask");
  }
  signal_fd_ = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  event_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (signal_fd_ < 0 || event_fd_ < 0) {
    throw std::system_error(errno, std::generic_category(), "signalfd/eventfd");
  }
}

ControlChannel::~ControlChannel() { close_descriptors(); }

void ControlChannel::close_descriptors() {
  if (signal_fd_ >= 0) ::close(signal_fd_);
  if (event_fd_ >= 0) ::close(event_fd_);
  signal_fd_ = event_fd_ = -1;
}

void ControlChannel::wake() {
  std::uint64_t one = 1;
  // Non-blocking; a full counter (never, in practice) already means "wake up".
  [[maybe_unused]] auto n = ::write(event_fd_, &one, sizeof one);
}

ControlChannel::Event ControlChannel::wait(Clock::time_point deadline,
                                           const std::function<bool()>& done,
                                           std::span<const int> fds, std::size_t* which) {
  std::vector<pollfd> polled;
  polled.push_back({signal_fd_, POLLIN, 0});
  polled.push_back({event_fd_, POLLIN, 0});
  for (int fd : fds) polled.push_back({fd, POLLIN, 0});
  while (true) {
    if (done && done()) return Event::kDone;
    auto now = Clock::now();
    if (now >= deadline) return Event::kDeadline;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
    int timeout_ms = static_cast<int>(std::min<long long>(left, 60'000));
    for (auto& p : polled) p.revents = 0;
    int rc = ::poll(polled.data(), polled.size(), timeout_ms);
    if (rc < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "poll");
    }
    if (polled[0].revents & POLLIN) {
      signalfd_siginfo info;
      bool got = false;
      while (::read(signal_fd_, &info, sizeof info) == sizeof info) {
        ++signals_;
        last_signal_ = static_cast<int>(info.ssi_signo);
        got = true;
      }
      if (got) return Event::kSignal;
    }
    if (polled[1].revents & POLLIN) {
      std::uint64_t count = 0;
      [[maybe_unused]] auto n = ::read(event_fd_, &count, sizeof count);
    }
    for (std::size_t i = 2; i < polled.size(); ++i) {
      if (polled[i].revents & (POLLIN | POLLHUP | POLLERR)) {
        if (which) *which = i - 2;
        return Event::kReadable;
      }
    }
  }
}

}  // namespace mcpmesh::bench
