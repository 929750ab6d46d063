// `troupe predict`: every test sample's outputs (logits) of a checkpoint,
// through the training pipeline, written as .npy or CSV.

#include <cstdio>
#include <memory>
#include <sstream>
#include <string>

#include "apps/troupe/commands.hpp"
#include "apps/troupe/eval_flags.hpp"
#include "runtime/error.hpp"
#include "runtime/io/file_util.hpp"

namespace troupe::apps {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// NumPy's .npy (version 1.0): a little-endian f32 array [N, C] in C order.
std::string npy_bytes(const runtime::tensor& p) {
  std::string dims;
  for (auto d : p.shape())
    dims += std::to_string(d) + ", ";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Magic (6) + version (2) + length (2) + header + '\n', padded to 64 bytes.
  while ((10 + header.size() + 1) % 64 != 0)
    header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  out += header;
  out.append(reinterpret_cast<const char*>(p.data<float>()), p.nbytes());
  return out;
}

/// One row per sample: its index, the predicted class (the largest output)
/// and every output.
std::string csv_text(const runtime::tensor& p) {
  const auto n = p.dim(0);
  const auto c = p.numel() / std::max<std::int64_t>(1, n);
  const auto* x = p.data<float>();
  std::ostringstream out;
  out.precision(9); // every f32 exactly
  out << "index,predicted";
  for (std::int64_t j = 0; j < c; ++j)
    out << ",output_" << j;
  out << '\n';
  for (std::int64_t i = 0; i < n; ++i) {
    const auto* row = x + i * c;
    std::int64_t best = 0;
    for (std::int64_t j = 1; j < c; ++j)
      if (row[j] > row[best])
        best = j;
    out << i << ',' << best;
    for (std::int64_t j = 0; j < c; ++j)
      out << ',' << row[j];
    out << '\n';
  }
  return out.str();
}

} // namespace

command_action add_predict_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "predict", "a checkpoint's outputs (logits) for every sample of a data set's test split, "
                 "through the same actors as training, as .npy (f32 [N, classes]) or .csv");
  auto flags = std::make_shared<evaluation_flags>();
  auto out = std::make_shared<std::string>();
  add_evaluation_flags(cmd, *flags);
  cmd->add_option("--out", *out,
                  "FILE.npy (f32 [N, classes] logits) or FILE.csv (index, predicted class, "
                  "logits)")
      ->required();
  return [flags, out] {
    const bool csv = ends_with(*out, ".csv");
    if (!csv && !ends_with(*out, ".npy"))
      throw runtime::input_error("--out " + *out + ": the file must end in .npy or .csv");
    auto result = run_evaluation_flags(*flags, true);
    const auto& p = result.predictions;
    if (!p.defined())
      throw std::runtime_error("the evaluation returned no predictions");
    auto bytes = csv ? csv_text(p) : npy_bytes(p);
    runtime::write_file_atomically(
        *out, {reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()});
    print_evaluation(evaluation_report(result.report, flags->request));
    std::printf("wrote %s: logits of %lld samples\n", out->c_str(),
                static_cast<long long>(p.dim(0)));
    return exit_ok;
  };
}

} // namespace troupe::apps
