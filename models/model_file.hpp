#pragma once

// Model specs from files: `--model FILE.json` names a model of one's own in
// the JSON that model_spec reads (docs/models.md), instead of a zoo name.

#include <string>

#include "models/layers/model_spec.hpp"

namespace troupe::models {

/// Whether a --model value names a spec file rather than a zoo model: it ends
/// in ".json" or holds a '/' (zoo names do neither; a file "mlp" in the
/// working directory does not shadow the zoo's mlp).
bool is_model_file(const std::string& value);

/// Reads and validates the model spec in `file` (model_spec::from_json: the
/// layers can be built and their shapes chain). Throws runtime::input_error
/// "--model FILE: ..." naming the file and the field or layer that is wrong.
model_spec read_model_file(const std::string& file);

} // namespace troupe::models
