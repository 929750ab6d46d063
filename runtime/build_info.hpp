#pragma once

#include <string_view>

namespace troupe::runtime {

/// The git commit the binary was built from ("unknown" outside a checkout),
/// with "-dirty" when the tree had uncommitted changes at configure time.
std::string_view git_commit();
/// CMake build type and compiler, for report provenance.
std::string_view build_description();

} // namespace troupe::runtime
