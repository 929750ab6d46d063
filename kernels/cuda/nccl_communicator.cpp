// NCCL communicator (host code, built by g++ when NCCL was found).

#include "kernels/cuda/nccl_communicator.hpp"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <thread>
#include <utility>

static_assert(troupe::kernels::cuda::nccl_communicator::unique_id_bytes == NCCL_UNIQUE_ID_BYTES);
static_assert(sizeof(ncclUniqueId) == NCCL_UNIQUE_ID_BYTES);

namespace troupe::kernels::cuda {

namespace {

using clock = std::chrono::steady_clock;

/// How long the destructor waits for ncclCommFinalize before aborting instead.
constexpr auto finalize_wait = std::chrono::seconds(2);

std::string cuda_text(cudaError_t err) {
  return std::string(cudaGetErrorString(err)) + " (error " + std::to_string(static_cast<int>(err)) +
         ")";
}

/// NCCL's message for `r`, with the communicator's last error when it says more.
std::string nccl_text(ncclComm_t comm, ncclResult_t r) {
  std::string s = ncclGetErrorString(r);
  const char* last = ncclGetLastError(comm);
  if (last != nullptr && *last != '\0' && s.find(last) == std::string::npos)
    s += std::string{": "} + last;
  return s + " (ncclResult " + std::to_string(static_cast<int>(r)) + ")";
}

ncclDataType_t nccl_type(runtime::dtype t) {
  switch (t) {
  case runtime::dtype::f32:
    return ncclFloat32;
  case runtime::dtype::f64:
    return ncclFloat64;
  case runtime::dtype::i32:
    return ncclInt32;
  case runtime::dtype::i64:
    return ncclInt64;
  case runtime::dtype::u8:
    return ncclUint8;
  }
  return ncclUint8;
}

/// Polling back-off: yield for the first rounds (collectives of small buffers
/// finish in microseconds), then sleep briefly so a long wait costs no core.
void back_off(int round) {
  if (round < 200)
    std::this_thread::yield();
  else
    std::this_thread::sleep_for(std::chrono::microseconds(round < 2000 ? 20 : 200));
}

std::string with_device(std::string what, int device) {
  return std::move(what) + " (cuda:" + std::to_string(device) + ")";
}

} // namespace

std::string nccl_communicator::make_unique_id(std::string& id) {
  ncclUniqueId uid;
  std::memset(&uid, 0, sizeof uid);
  ncclResult_t r = ncclGetUniqueId(&uid);
  if (r != ncclSuccess)
    return "ncclGetUniqueId: " + nccl_text(nullptr, r);
  id.assign(uid.internal, sizeof uid.internal);
  return {};
}

nccl_communicator::nccl_communicator(int device, std::shared_ptr<const std::atomic<bool>> abort,
                                     std::chrono::milliseconds timeout)
    : device_(device), abort_(std::move(abort)), timeout_(timeout) {}

nccl_communicator::~nccl_communicator() {
  (void)cudaSetDevice(device_);
  if (comm_ != nullptr) {
    bool clean = failure_.empty() && !abort_requested();
    if (clean) {
      // A healthy communicator: flush and release in order (bounded: a peer
      // that already aborted must not keep this thread).
      ncclResult_t r = ncclCommFinalize(comm_);
      ncclResult_t state = r;
      auto start = clock::now();
      for (int round = 0; r == ncclSuccess || r == ncclInProgress; ++round) {
        if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess || state != ncclInProgress ||
            clock::now() - start > finalize_wait)
          break;
        back_off(round);
      }
      clean = (r == ncclSuccess || r == ncclInProgress) && state == ncclSuccess;
    }
    if (clean)
      (void)ncclCommDestroy(comm_);
    else
      (void)ncclCommAbort(comm_);
    comm_ = nullptr;
  }
  if (buffer_ != nullptr)
    (void)cudaFree(buffer_);
  if (stream_ != nullptr)
    (void)cudaStreamDestroy(stream_);
  (void)cudaGetLastError();
}

bool nccl_communicator::abort_requested() const noexcept {
  return abort_ && abort_->load(std::memory_order_acquire);
}

void nccl_communicator::abort_comm() noexcept {
  if (comm_ != nullptr) {
    (void)ncclCommAbort(comm_);
    comm_ = nullptr;
  }
}

std::string nccl_communicator::fail(std::string what) {
  failure_ = with_device(std::move(what), device_);
  abort_comm();
  return failure_;
}

std::string nccl_communicator::usable(const char* what) {
  if (!failure_.empty())
    return std::string(what) + ": NCCL communicator aborted after an earlier failure: " + failure_;
  if (comm_ == nullptr)
    return with_device(std::string(what) + ": NCCL communicator not initialised", device_);
  if (cudaError_t e = cudaSetDevice(device_); e != cudaSuccess)
    return fail(std::string(what) + ": cudaSetDevice: " + cuda_text(e));
  return {};
}

std::string nccl_communicator::wait(const std::string& what, bool for_stream) {
  auto start = clock::now();
  for (int round = 0;; ++round) {
    ncclResult_t state = ncclSuccess;
    if (ncclResult_t r = ncclCommGetAsyncError(comm_, &state); r != ncclSuccess)
      return fail(what + ": ncclCommGetAsyncError: " + nccl_text(comm_, r));
    if (state != ncclSuccess && state != ncclInProgress)
      return fail(what + ": " + nccl_text(comm_, state));
    if (state == ncclSuccess) {
      if (!for_stream)
        return {};
      cudaError_t e = cudaStreamQuery(stream_);
      if (e == cudaSuccess)
        return {};
      if (e != cudaErrorNotReady)
        return fail(what + ": cudaStreamQuery: " + cuda_text(e));
    }
    if (abort_requested())
      return fail(what + ": aborted (this rank failed or a peer died)");
    if (timeout_.count() > 0 && clock::now() - start > timeout_)
      return fail(what + ": not finished after " + std::to_string(timeout_.count()) +
                  " ms (a peer is not taking part)");
    back_off(round);
  }
}

std::string nccl_communicator::launch(const char* what, int nccl_result) {
  auto r = static_cast<ncclResult_t>(nccl_result);
  if (r != ncclSuccess && r != ncclInProgress)
    return fail(std::string(what) + ": " + nccl_text(comm_, r));
  return wait(what, true);
}

std::string nccl_communicator::reserve(std::size_t bytes) {
  if (bytes <= capacity_)
    return {};
  // Grow in whole MiB (and at least double) so that a training loop's
  // gradient buffers settle after the first steps.
  constexpr std::size_t mib = std::size_t{1} << 20;
  std::size_t want = std::max(bytes, 2 * capacity_);
  want = (want + mib - 1) / mib * mib;
  if (buffer_ != nullptr) {
    (void)cudaFree(buffer_);
    buffer_ = nullptr;
    capacity_ = 0;
  }
  if (cudaError_t e = cudaMalloc(&buffer_, want); e != cudaSuccess) {
    buffer_ = nullptr;
    return fail("cudaMalloc of " + std::to_string(want) + " bytes: " + cuda_text(e));
  }
  capacity_ = want;
  return {};
}

std::string nccl_communicator::copy(void* dst, const void* src, std::size_t bytes,
                                    const std::string& what, bool wait_done) {
  if (bytes == 0)
    return {};
  // Ordered on the stream; a copy into the device needs no wait before the
  // collective that reads it, a copy out of it must be done before we return.
  if (cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_);
      e != cudaSuccess)
    return fail(what + ": cudaMemcpyAsync: " + cuda_text(e));
  return wait_done ? wait(what, true) : std::string{};
}

std::string nccl_communicator::init(int rank, int size, const std::string& unique_id) {
  if (initialised_)
    return with_device("ncclCommInitRankConfig: communicator initialised twice", device_);
  initialised_ = true;
  rank_ = rank;
  size_ = size;
  if (unique_id.size() != unique_id_bytes)
    return fail("ncclCommInitRankConfig: unique id of " + std::to_string(unique_id.size()) +
                " bytes, expected " + std::to_string(unique_id_bytes));
  if (size < 1 || rank < 0 || rank >= size)
    return fail("ncclCommInitRankConfig: rank " + std::to_string(rank) + " of " +
                std::to_string(size));
  if (cudaError_t e = cudaSetDevice(device_); e != cudaSuccess)
    return fail("cudaSetDevice: " + cuda_text(e));
  cudaStream_t s = nullptr;
  if (cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking); e != cudaSuccess)
    return fail("cudaStreamCreateWithFlags: " + cuda_text(e));
  stream_ = s;
  ncclUniqueId uid;
  std::memcpy(uid.internal, unique_id.data(), unique_id_bytes);
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0; // return at once; wait() polls, so a missing peer cannot hang us
  ncclComm_t c = nullptr;
  ncclResult_t r = ncclCommInitRankConfig(&c, size, uid, rank, &config);
  comm_ = c;
  if (r != ncclSuccess && r != ncclInProgress)
    return fail("ncclCommInitRankConfig: " + nccl_text(c, r));
  if (comm_ == nullptr)
    return fail("ncclCommInitRankConfig: no communicator returned");
  return wait("ncclCommInitRankConfig", false);
}

// --- device collectives -------------------------------------------------------

std::string nccl_communicator::all_reduce_sum_device(const void* send, void* recv,
                                                     std::size_t count, runtime::dtype type) {
  if (auto e = usable("ncclAllReduce"); !e.empty())
    return e;
  if (count == 0)
    return {};
  return launch("ncclAllReduce",
                ncclAllReduce(send, recv, count, nccl_type(type), ncclSum, comm_, stream_));
}

std::string nccl_communicator::broadcast_device(const void* send, void* recv, std::size_t count,
                                                runtime::dtype type, int root) {
  if (auto e = usable("ncclBroadcast"); !e.empty())
    return e;
  if (count == 0)
    return {};
  return launch("ncclBroadcast",
                ncclBroadcast(send, recv, count, nccl_type(type), root, comm_, stream_));
}

std::string nccl_communicator::reduce_scatter_sum_device(const void* send, void* recv,
                                                         std::size_t recv_count,
                                                         runtime::dtype type) {
  if (auto e = usable("ncclReduceScatter"); !e.empty())
    return e;
  if (recv_count == 0)
    return {};
  return launch("ncclReduceScatter", ncclReduceScatter(send, recv, recv_count, nccl_type(type),
                                                       ncclSum, comm_, stream_));
}

std::string nccl_communicator::all_gather_device(const void* send, void* recv,
                                                 std::size_t send_count, runtime::dtype type) {
  if (auto e = usable("ncclAllGather"); !e.empty())
    return e;
  if (send_count == 0)
    return {};
  return launch("ncclAllGather",
                ncclAllGather(send, recv, send_count, nccl_type(type), comm_, stream_));
}

// --- staged collectives (in place in the device buffer) -----------------------

std::string nccl_communicator::staged(const char* what, std::size_t count, std::size_t buffer_bytes,
                                      const void* in, region in_at, void* out, region out_at,
                                      const std::function<std::string(unsigned char*)>& run) {
  if (auto e = usable(what); !e.empty() || count == 0)
    return e;
  if (auto e = reserve(buffer_bytes); !e.empty())
    return e;
  auto* base = static_cast<unsigned char*>(buffer_);
  std::string name = what;
  if (in != nullptr)
    if (auto e = copy(base + in_at.offset, in, in_at.bytes, name + ": copy to the device", false);
        !e.empty())
      return e;
  if (auto e = run(base); !e.empty())
    return e;
  if (out == nullptr)
    return {};
  return copy(out, base + out_at.offset, out_at.bytes, name + ": copy from the device", true);
}

std::string nccl_communicator::all_reduce_sum(const void* in, void* out, std::size_t count,
                                              runtime::dtype type) {
  auto bytes = count * runtime::element_size(type);
  return staged("ncclAllReduce", count, bytes, in, {0, bytes}, out, {0, bytes},
                [&](unsigned char* buf) { return all_reduce_sum_device(buf, buf, count, type); });
}

std::string nccl_communicator::broadcast(const void* in, void* out, std::size_t count,
                                         runtime::dtype type, int root) {
  auto bytes = count * runtime::element_size(type);
  return staged("ncclBroadcast", count, bytes, rank_ == root ? in : nullptr, {0, bytes}, out,
                {0, bytes},
                [&](unsigned char* buf) { return broadcast_device(buf, buf, count, type, root); });
}

std::string nccl_communicator::reduce_scatter_sum(const void* in, void* out, std::size_t recv_count,
                                                  runtime::dtype type) {
  auto slot = recv_count * runtime::element_size(type);
  auto total = slot * static_cast<std::size_t>(size_);
  auto mine = slot * static_cast<std::size_t>(rank_);
  return staged("ncclReduceScatter", recv_count, total, in, {0, total}, out, {mine, slot},
                [&](unsigned char* buf) {
                  return reduce_scatter_sum_device(buf, buf + mine, recv_count, type);
                });
}

std::string nccl_communicator::all_gather(const void* in, void* out, std::size_t send_count,
                                          runtime::dtype type) {
  auto slot = send_count * runtime::element_size(type);
  auto total = slot * static_cast<std::size_t>(size_);
  auto mine = slot * static_cast<std::size_t>(rank_);
  return staged(
      "ncclAllGather", send_count, total, in, {mine, slot}, out, {0, total},
      [&](unsigned char* buf) { return all_gather_device(buf + mine, buf, send_count, type); });
}

} // namespace troupe::kernels::cuda
