#pragma once

// troupe's command line as library entry points (target troupe::troupe_cli_lib),
// so that a user's own program can be a troupe: register custom layers
// (models::register_layer) or anything else process-wide first, then hand
// over the command line. Every process of a cluster that builds layers (the
// supervisor plans with them, nodes run them, a client checks the model file)
// must be such a program when a job uses a custom layer
// (apps/examples/custom_layer_node.cpp).

namespace troupe {

/// `troupe ARGS...`: argv[1] is the subcommand (train, plan, bench,
/// supervisor, node, certs). Returns the exit status (0, 1 failure, 2 bad input).
int run_cli(int argc, char** argv);

/// `troupe node ARGS...`: a node agent that joins a supervisor (argv[1..] are
/// the node command's flags). Returns the exit status.
int run_node(int argc, char** argv);

/// `troupe supervisor ARGS...`: a cluster supervisor. Returns the exit status.
int run_supervisor(int argc, char** argv);

} // namespace troupe
