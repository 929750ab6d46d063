// troupe_peer_mpi: MPI_Allreduce (MPI_SUM) of f32 buffers, one process per
// rank under mpirun; `troupe bench allreduce` restricts OpenMPI to TCP on lo
// (--mca pml ob1 --mca btl tcp,self --mca btl_tcp_if_include lo). See
// allreduce_peer_args.hpp for flags and output.

#include <mpi.h>

#include <cstdio>
#include <exception>
#include <vector>

#include "allreduce_peer_args.hpp"

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rc = 0;
  try {
    auto a = troupe::bench::parse_peer_args(argc, argv);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    for (const auto& s : a.sizes) {
      auto elements = s.bytes / sizeof(float);
      auto in = troupe::bench::peer_input(elements, rank);
      std::vector<float> out(elements, 0.f);
      auto count = static_cast<int>(elements);
      for (int i = 0; i < a.warmup; ++i)
        MPI_Allreduce(in.data(), out.data(), count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      std::vector<double> per_op;
      for (int r = 0; r < a.reps; ++r) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        for (int i = 0; i < s.iters; ++i)
          MPI_Allreduce(in.data(), out.data(), count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        double dt = (MPI_Wtime() - t0) / s.iters, worst = 0;
        MPI_Reduce(&dt, &worst, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
        per_op.push_back(worst);
      }
      int ok = troupe::bench::peer_result_ok(out, size) ? 1 : 0, all_ok = 0;
      MPI_Reduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, 0, MPI_COMM_WORLD);
      if (rank == 0)
        troupe::bench::print_peer_row(s, all_ok == 1, per_op);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "troupe_peer_mpi: %s\n", e.what());
    rc = 1;
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
  return rc;
}
