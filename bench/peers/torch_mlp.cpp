// troupe_peer_libtorch: trains troupe's zoo "mlp" (784-1024-512-10, ReLU) with
// libtorch, so troupe's step rate can be compared with a mainstream framework
// on the same machine, thread count, optimizer and global batch.
//
// What it measures: forward + cross-entropy + backward + optimizer step on
// synthetic batches that are generated once and held in memory (a ring of
// a few batches), so data loading and decoding are deliberately excluded. Only
// --steps steps after --warmup untimed steps count.
//
// --init FILE.safetensors loads the initial weights troupe wrote (0.weight,
// 0.bias, 2.weight, 2.bias, 4.weight, 4.bias; weights [out, in] as in
// torch::nn::Linear) so both frameworks start from identical parameters; without
// it torch::nn::Linear's default init is used, which draws from the same
// distribution as troupe's (kaiming-uniform weights, U(+-1/sqrt(in)) biases).
//
// Output: one JSON object on stdout, e.g.
// {"steps_per_second": 190.3, "steps": 200, "threads": 1, "torch_version": "1.13.1",
//  "blas": "/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3", ...}

#include <torch/torch.h>

#include <dlfcn.h>
#include <link.h>
#include <omp.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/error.hpp"
#include "runtime/io/safetensors.hpp"

namespace {

struct options {
  std::string optimizer = "adam"; // troupe's default
  double lr = 1e-3;
  double momentum = 0.0;
  std::int64_t batch = 64;
  int threads = 1;
  int warmup = 20;
  int steps = 200;
  std::uint64_t seed = 1;
  std::string init;
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "troupe_peer_libtorch: " << why << "\n"
            << "usage: troupe_peer_libtorch [--optimizer sgd|adam] [--lr X] [--momentum X]\n"
            << "         [--batch N] [--threads N] [--warmup N] [--steps N] [--seed N]\n"
            << "         [--init FILE.safetensors]\n";
  std::exit(2);
}

options parse_args(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc)
        usage(a + " needs a value");
      return argv[++i];
    };
    try {
      if (a == "--optimizer")
        o.optimizer = value();
      else if (a == "--lr")
        o.lr = std::stod(value());
      else if (a == "--momentum")
        o.momentum = std::stod(value());
      else if (a == "--batch")
        o.batch = std::stoll(value());
      else if (a == "--threads")
        o.threads = std::stoi(value());
      else if (a == "--warmup")
        o.warmup = std::stoi(value());
      else if (a == "--steps")
        o.steps = std::stoi(value());
      else if (a == "--seed")
        o.seed = std::stoull(value());
      else if (a == "--init")
        o.init = value();
      else if (a == "--help" || a == "-h")
        usage("help");
      else
        usage("unknown argument " + a);
    } catch (const std::logic_error&) { // stod/stoi: invalid_argument, out_of_range
      usage("bad value for " + a);
    }
  }
  if (o.optimizer != "sgd" && o.optimizer != "adam")
    usage("--optimizer must be sgd or adam");
  if (o.batch < 1 || o.threads < 1 || o.warmup < 0 || o.steps < 1 || !(o.lr > 0))
    usage("--batch, --threads and --steps must be positive, --warmup >= 0, --lr > 0");
  return o;
}

/// Every loaded shared object whose file name mentions blas or lapack.
std::vector<std::string> loaded_blas_libraries() {
  std::vector<std::string> found;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        std::string path = info->dlpi_name ? info->dlpi_name : "";
        auto name = std::filesystem::path(path).filename().string();
        if (name.find("blas") != std::string::npos || name.find("lapack") != std::string::npos) {
          std::error_code ec;
          auto real = std::filesystem::canonical(path, ec);
          auto* out = static_cast<std::vector<std::string>*>(data);
          out->push_back(path + (ec || real.string() == path ? "" : " -> " + real.string()));
        }
        return 0;
      },
      &found);
  return found;
}

/// The libblas.so.3 the process resolved (what libtorch calls), else the first
/// BLAS-like library.
std::string blas_in_use(const std::vector<std::string>& libs) {
  for (const auto& l : libs)
    if (l.find("libblas.so") != std::string::npos)
      return l;
  return libs.empty() ? "none found" : libs.front();
}

/// OpenBLAS's own description of itself, when the loaded BLAS is OpenBLAS.
nlohmann::json openblas_info(int threads) {
  nlohmann::json j;
  using set_threads_fn = void (*)(int);
  using get_int_fn = int (*)();
  using get_str_fn = char* (*)();
  if (auto set = reinterpret_cast<set_threads_fn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads")))
    set(threads); // process-wide; the OpenMP build also follows omp_set_num_threads
  if (auto cfg = reinterpret_cast<get_str_fn>(dlsym(RTLD_DEFAULT, "openblas_get_config")))
    j["config"] = cfg();
  if (auto core = reinterpret_cast<get_str_fn>(dlsym(RTLD_DEFAULT, "openblas_get_corename")))
    j["core"] = core();
  if (auto par = reinterpret_cast<get_int_fn>(dlsym(RTLD_DEFAULT, "openblas_get_parallel"))) {
    int p = par();
    j["parallel"] = p == 0 ? "sequential" : p == 1 ? "pthread" : p == 2 ? "openmp" : "unknown";
  }
  if (auto n = reinterpret_cast<get_int_fn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads")))
    j["threads"] = n();
  return j;
}

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v ? v : fallback;
}

torch::nn::Sequential make_mlp() {
  return torch::nn::Sequential(torch::nn::Linear(784, 1024), torch::nn::ReLU(),
                               torch::nn::Linear(1024, 512), torch::nn::ReLU(),
                               torch::nn::Linear(512, 10));
}

/// Copies troupe's initial weights into the model (names and shapes must match).
void load_init(torch::nn::Sequential& model, const std::string& file) {
  auto st = troupe::runtime::read_safetensors(file);
  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  for (auto& p : model->named_parameters()) {
    const auto& name = p.key();
    const troupe::runtime::tensor* src = nullptr;
    for (const auto& [n, t] : st.tensors)
      if (n == name)
        src = &t;
    if (!src)
      throw troupe::runtime::input_error("--init '" + file + "': no tensor named '" + name + "'");
    if (src->type() != troupe::runtime::dtype::f32)
      throw troupe::runtime::input_error("--init '" + file + "': tensor '" + name + "' is not F32");
    std::vector<std::int64_t> want(p.value().sizes().begin(), p.value().sizes().end());
    if (src->shape() != want)
      throw troupe::runtime::input_error("--init '" + file + "': tensor '" + name + "' has shape " +
                                         troupe::runtime::to_string(src->shape()) + ", expected " +
                                         troupe::runtime::to_string(want));
    auto view = torch::from_blob(const_cast<float*>(src->data<float>()), want, torch::kFloat32);
    p.value().copy_(view);
    used.insert(name);
  }
  for (const auto& [n, t] : st.tensors)
    if (!used.count(n))
      throw troupe::runtime::input_error("--init '" + file + "': unexpected tensor '" + n + "'");
}

} // namespace

int main(int argc, char** argv) {
  const options o = parse_args(argc, argv);
  try {
    torch::manual_seed(o.seed);
    // Intra-op threads (OpenMP in this libtorch), the OpenMP default for this
    // thread, and OpenBLAS's own count.
    torch::set_num_threads(o.threads);
    omp_set_num_threads(o.threads);
    nlohmann::json blas_info = openblas_info(o.threads);

    auto model = make_mlp();
    if (!o.init.empty())
      load_init(model, o.init);

    std::unique_ptr<torch::optim::Optimizer> opt;
    if (o.optimizer == "sgd")
      opt = std::make_unique<torch::optim::SGD>(
          model->parameters(), torch::optim::SGDOptions(o.lr).momentum(o.momentum));
    else
      opt = std::make_unique<torch::optim::Adam>(model->parameters(),
                                                 torch::optim::AdamOptions(o.lr));

    // Synthetic data, generated once: MNIST-like pixels in [0, 1) and labels 0..9.
    constexpr int ring = 8;
    std::vector<torch::Tensor> xs, ys;
    for (int i = 0; i < ring; ++i) {
      xs.push_back(torch::rand({o.batch, 784}));
      ys.push_back(torch::randint(0, 10, {o.batch}, torch::kLong));
    }

    double last_loss = 0;
    auto step = [&](int i) {
      opt->zero_grad();
      auto logits = model->forward(xs[i % ring]);
      auto loss = torch::nn::functional::cross_entropy(logits, ys[i % ring]);
      loss.backward();
      opt->step();
      return loss;
    };
    for (int i = 0; i < o.warmup; ++i)
      step(i);
    auto t0 = std::chrono::steady_clock::now();
    torch::Tensor loss;
    for (int i = 0; i < o.steps; ++i)
      loss = step(o.warmup + i);
    last_loss = loss.item<double>(); // also waits for the last step
    auto t1 = std::chrono::steady_clock::now();
    double seconds = std::chrono::duration<double>(t1 - t0).count();

    auto libs = loaded_blas_libraries();
    nlohmann::json out;
    out["steps_per_second"] = o.steps / seconds;
    out["steps"] = o.steps;
    out["warmup"] = o.warmup;
    out["seconds"] = seconds;
    out["threads"] = o.threads;
    out["torch_threads"] = torch::get_num_threads();
    out["batch"] = o.batch;
    out["optimizer"] = o.optimizer;
    out["lr"] = o.lr;
    out["momentum"] = o.momentum;
    out["init"] = o.init.empty() ? "torch default" : o.init;
    out["final_loss"] = last_loss;
    out["data"] = "synthetic, in memory (excludes data loading)";
    out["torch_version"] = TORCH_VERSION;
    out["blas"] = blas_in_use(libs);
    out["blas_libraries"] = libs;
    out["openblas"] = blas_info;
    out["env"] = {{"OPENBLAS_CORETYPE", env_or("OPENBLAS_CORETYPE", "")},
                  {"OPENBLAS_L2_SIZE", env_or("OPENBLAS_L2_SIZE", "")},
                  {"OMP_NUM_THREADS", env_or("OMP_NUM_THREADS", "")}};
    std::cout << out.dump() << std::endl;
    return 0;
  } catch (const troupe::runtime::input_error& e) {
    std::cerr << "troupe_peer_libtorch: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "troupe_peer_libtorch: " << e.what() << "\n";
    return 1;
  }
}
