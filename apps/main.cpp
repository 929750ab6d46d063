// The troupe executable (build/bin/troupe): the CLI of apps/troupe/run_cli.cpp.

#include "apps/troupe/entry_points.hpp"

int main(int argc, char** argv) {
  return troupe::run_cli(argc, argv);
}
