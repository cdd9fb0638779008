#pragma once
/// \file
/// A FIFO of events that holds no memory while it has never held anything: the live queue of
/// an SSE stream and a stream's resumption buffer are empty most of their lives (an idle held
/// stream, a session without events), and `std::deque` allocates a 512-byte block and its map
/// as soon as it is constructed (libstdc++), ~1.1 KB per held stream for the two.
///
/// A vector and the index of its front: push_back appends, pop_front moves the index and
/// releases the element's contents at once; the consumed prefix is dropped when it is half the
/// vector (amortised O(1) per element). `release()` frees the storage of an empty ring.
/// Thread-safety: none (a value; its owners lock).

#include <cstddef>
#include <utility>
#include <vector>

namespace mcpmesh::mcp {

template <class T>
class EventRing {
 public:
  using iterator = typename std::vector<T>::iterator;

  [[nodiscard]] bool empty() const { return head_ == items_.size(); }
  [[nodiscard]] std::size_t size() const { return items_.size() - head_; }
  [[nodiscard]] T& front() { return items_[head_]; }
  [[nodiscard]] const T& front() const { return items_[head_]; }
  iterator begin() { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
  iterator end() { return items_.end(); }

  template <class... Args>
  T& emplace_back(Args&&... args) {
    if (head_ > 0 && (head_ == items_.size() || head_ * 2 >= items_.size())) compact();
    return items_.emplace_back(std::forward<Args>(args)...);
  }
  void push_back(T item) { emplace_back(std::move(item)); }

  void pop_front() {
    items_[head_++] = T();  // its payload goes now, not when the slot is reused
    if (head_ == items_.size()) clear();
  }

  /// Empties the ring; keeps its storage for the next events.
  void clear() {
    items_.clear();
    head_ = 0;
  }

  /// Empties the ring and frees its storage.
  void release() {
    std::vector<T>().swap(items_);
    head_ = 0;
  }

  [[nodiscard]] std::size_t capacity() const { return items_.capacity(); }

 private:
  void compact() {
    items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }

  std::vector<T> items_;
  std::size_t head_ = 0;  // items_[0, head_) were popped
};

}  // namespace mcpmesh::mcp
