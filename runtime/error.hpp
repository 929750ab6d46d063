#pragma once

#include <stdexcept>
#include <string>

namespace troupe::runtime {

/// Bad input from outside the program: a file, a flag, a config, bytes from a
/// socket, a checkpoint. Parsers throw it with a message that names what was
/// wrong (the file, the field, the offending value); the CLI prints the message
/// and exits with status 2, and actors turn it into a caf::error for the job.
class input_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

} // namespace troupe::runtime
