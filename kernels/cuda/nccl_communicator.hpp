#pragma once

// One rank's NCCL communicator: creation from a ncclUniqueId, a dedicated
// stream, the four collectives, and waiting that cannot hang.
//
// Host-only declarations (no CUDA or NCCL headers), so that actors/ can use it
// without compiling against either. Built only when CUDA and NCCL were found
// (TROUPE_HAVE_NCCL).
//
// Why every call waits by polling: a NCCL kernel whose peer never arrives
// spins forever, and cudaStreamSynchronize would wait with it. The
// communicator is therefore created non-blocking (ncclConfig_t::blocking = 0)
// and every call polls ncclCommGetAsyncError (NCCL's own errors: a peer
// process that died, a broken socket) and cudaStreamQuery, and also checks an
// abort flag that another thread may set (a rank actor whose peer died) and a
// timeout. Any failure aborts the communicator (ncclCommAbort), as NCCL
// requires; every later call then fails with the first error.
//
// Errors are values: calls return an empty string on success, else what failed
// with NCCL's / CUDA's message ("ncclAllReduce: remote process exited or there
// was a network error: ... (ncclResult 6)"). Use a communicator from one thread
// (the one that created it): the CUDA device is per thread.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "kernels/collective_communicator.hpp"
#include "runtime/dtype.hpp"

struct ncclComm;    // nccl.h: typedef struct ncclComm* ncclComm_t
struct CUstream_st; // cuda_runtime_api.h: typedef struct CUstream_st* cudaStream_t

namespace troupe::kernels::cuda {

class nccl_communicator final : public collective_communicator {
public:
  /// Size of a ncclUniqueId (NCCL_UNIQUE_ID_BYTES).
  static constexpr std::size_t unique_id_bytes = 128;

  /// Not yet connected (init connects). `device`: the CUDA device index.
  /// `abort`: set it (from any thread) to make a waiting call abort the
  /// communicator and fail; may be null. `timeout`: a call (or init) that has
  /// not finished after this long fails the same way; zero waits forever.
  nccl_communicator(int device, std::shared_ptr<const std::atomic<bool>> abort,
                    std::chrono::milliseconds timeout);
  /// Finalizes and destroys a healthy communicator (bounded wait), aborts a
  /// failed one; frees the stream and the staging buffer.
  ~nccl_communicator() override;
  nccl_communicator(const nccl_communicator&) = delete;
  nccl_communicator& operator=(const nccl_communicator&) = delete;

  /// ncclGetUniqueId, as bytes for a message (unique_id_bytes long).
  [[nodiscard]] std::string make_unique_id(std::string& id) override;
  /// ncclCommInitRankConfig (non-blocking) on the device, then waits until
  /// all `size` ranks have joined. Call once.
  [[nodiscard]] std::string init(int rank, int size, const std::string& unique_id) override;

  // --- staged collectives ---------------------------------------------------
  // `in` / `out` are host memory (pageable or pinned) or device memory of this
  // device (copies use cudaMemcpyDefault); they go through one device buffer
  // owned by the communicator (in place), so the caller needs no device
  // memory. Counts are elements of `type` and must agree on every rank (NCCL
  // does not check them). Each call returns when `out` is written.

  /// out[i] = sum over ranks of in[i]; `count` elements.
  [[nodiscard]] std::string all_reduce_sum(const void* in, void* out, std::size_t count,
                                           runtime::dtype type) override;
  /// out = the root's `in` (read on the root only); `count` elements. The
  /// root may pass a null `out` (it has the data already).
  [[nodiscard]] std::string broadcast(const void* in, void* out, std::size_t count,
                                      runtime::dtype type, int root) override;
  /// `in`: size() x recv_count elements; out: recv_count elements, slot
  /// rank() of the sum.
  [[nodiscard]] std::string reduce_scatter_sum(const void* in, void* out, std::size_t recv_count,
                                               runtime::dtype type) override;
  /// `in`: send_count elements; out: size() x send_count, rank order.
  [[nodiscard]] std::string all_gather(const void* in, void* out, std::size_t send_count,
                                       runtime::dtype type) override;

  // --- device collectives ---------------------------------------------------
  // Device pointers of this device (in place allowed as NCCL allows it);
  // enqueued on stream() and waited for.

  [[nodiscard]] std::string all_reduce_sum_device(const void* send, void* recv, std::size_t count,
                                                  runtime::dtype type);
  [[nodiscard]] std::string broadcast_device(const void* send, void* recv, std::size_t count,
                                             runtime::dtype type, int root);
  [[nodiscard]] std::string reduce_scatter_sum_device(const void* send, void* recv,
                                                      std::size_t recv_count, runtime::dtype type);
  [[nodiscard]] std::string all_gather_device(const void* send, void* recv, std::size_t send_count,
                                              runtime::dtype type);

  /// True after a successful init and before any failure.
  bool ok() const noexcept { return comm_ != nullptr && failure_.empty(); }
  /// The first failure ("" when none).
  const std::string& failure() const noexcept { return failure_; }
  int device() const noexcept { return device_; }
  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  /// The communicator's stream (a cudaStream_t), null before init.
  CUstream_st* stream() const noexcept { return stream_; }

private:
  /// Bytes [offset, offset + bytes) of the staging buffer.
  struct region {
    std::size_t offset = 0;
    std::size_t bytes = 0;
  };
  /// The staged pattern: `in` (unless null) to `in_at` of a buffer of
  /// `buffer_bytes`, `run` on the buffer, `out_at` to `out` (unless null);
  /// nothing at all when `count` is 0.
  std::string staged(const char* what, std::size_t count, std::size_t buffer_bytes, const void* in,
                     region in_at, void* out, region out_at,
                     const std::function<std::string(unsigned char*)>& run);
  std::string usable(const char* what);
  std::string fail(std::string what);
  std::string wait(const std::string& what, bool for_stream);
  std::string launch(const char* what, int nccl_result);
  std::string reserve(std::size_t bytes);
  std::string copy(void* dst, const void* src, std::size_t bytes, const std::string& what,
                   bool wait_done);
  void abort_comm() noexcept;
  bool abort_requested() const noexcept;

  int device_;
  std::shared_ptr<const std::atomic<bool>> abort_;
  std::chrono::milliseconds timeout_;
  int rank_ = 0;
  int size_ = 0;
  ncclComm* comm_ = nullptr;
  CUstream_st* stream_ = nullptr;
  void* buffer_ = nullptr; ///< device staging buffer (grows, never shrinks)
  std::size_t capacity_ = 0;
  bool initialised_ = false;
  std::string failure_;
};

} // namespace troupe::kernels::cuda
