#define BOOST_TEST_MODULE kernels_conv
#define BOOST_TEST_DYN_LINK
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <limits>

#include "kernels/cpu/conv.hpp"
#include "test_util.hpp"

using namespace troupe::kernels::cpu;
using namespace troupe::kernels::test;

namespace {

conv_geometry geom(std::int64_t c, std::int64_t h, std::int64_t w, std::int64_t kh, std::int64_t kw,
                   std::int64_t sh, std::int64_t sw, std::int64_t ph, std::int64_t pw) {
  conv_geometry g;
  g.channels = c, g.height = h, g.width = w, g.kernel_h = kh, g.kernel_w = kw;
  g.stride_h = sh, g.stride_w = sw, g.pad_h = ph, g.pad_w = pw;
  return g;
}

// Geometries covering 1x1 (identity im2col), strides, asymmetric kernels and
// padding, a one-row input, and the MNIST CNN's first layer.
std::vector<conv_geometry> geometries() {
  return {geom(1, 28, 28, 3, 3, 1, 1, 0, 0), geom(3, 7, 9, 3, 3, 2, 2, 1, 1),
          geom(2, 5, 5, 1, 1, 1, 1, 0, 0),   geom(4, 6, 7, 1, 1, 2, 2, 0, 0),
          geom(2, 6, 5, 2, 3, 2, 1, 1, 0),   geom(5, 1, 7, 1, 3, 1, 1, 0, 1),
          geom(3, 8, 8, 5, 5, 1, 3, 2, 2),   geom(1, 3, 3, 3, 3, 1, 1, 2, 2)};
}

// Input element (n, c, ih, iw) or 0 in the padding.
double at(const std::vector<float>& x, const conv_geometry& g, std::int64_t n, std::int64_t c,
          std::int64_t ih, std::int64_t iw) {
  if (ih < 0 || ih >= g.height || iw < 0 || iw >= g.width)
    return 0.0;
  return x[((n * g.channels + c) * g.height + ih) * g.width + iw];
}

// Direct convolution in double.
std::vector<double> ref_conv(const std::vector<float>& x, const std::vector<float>& w,
                             const float* b, std::int64_t batch, std::int64_t f_n,
                             const conv_geometry& g) {
  const std::int64_t oh_n = g.out_h(), ow_n = g.out_w();
  std::vector<double> y(batch * f_n * oh_n * ow_n);
  for (std::int64_t n = 0; n < batch; ++n)
    for (std::int64_t f = 0; f < f_n; ++f)
      for (std::int64_t oh = 0; oh < oh_n; ++oh)
        for (std::int64_t ow = 0; ow < ow_n; ++ow) {
          double s = b ? b[f] : 0.0;
          for (std::int64_t c = 0; c < g.channels; ++c)
            for (std::int64_t i = 0; i < g.kernel_h; ++i)
              for (std::int64_t j = 0; j < g.kernel_w; ++j)
                s += at(x, g, n, c, oh * g.stride_h - g.pad_h + i, ow * g.stride_w - g.pad_w + j) *
                     w[((f * g.channels + c) * g.kernel_h + i) * g.kernel_w + j];
          y[((n * f_n + f) * oh_n + oh) * ow_n + ow] = s;
        }
  return y;
}

std::int64_t col_size(const conv_geometry& g) {
  return g.channels * g.kernel_h * g.kernel_w * g.out_h() * g.out_w();
}

} // namespace

BOOST_AUTO_TEST_CASE(im2col_col2im_are_adjoint) {
  for (const auto& g : geometries()) {
    auto x = random_vector(static_cast<std::size_t>(g.channels * g.height * g.width));
    std::vector<float> col(col_size(g));
    im2col(x.data(), g, col.data());
    // Each col entry is the input value at its window position, or 0 in padding.
    const std::int64_t oh_n = g.out_h(), ow_n = g.out_w();
    std::vector<double> want(col.size());
    for (std::int64_t c = 0; c < g.channels; ++c)
      for (std::int64_t i = 0; i < g.kernel_h; ++i)
        for (std::int64_t j = 0; j < g.kernel_w; ++j)
          for (std::int64_t oh = 0; oh < oh_n; ++oh)
            for (std::int64_t ow = 0; ow < ow_n; ++ow)
              want[(((c * g.kernel_h + i) * g.kernel_w + j) * oh_n + oh) * ow_n + ow] =
                  at(x, g, 0, c, oh * g.stride_h - g.pad_h + i, ow * g.stride_w - g.pad_w + j);
    check_close(col, want, 0, 0, "im2col");
    // <im2col(x), r> == <x, col2im(r)>
    auto r = random_vector(col.size());
    std::vector<float> back(x.size(), 5.f);
    col2im(r.data(), g, back.data(), false);
    double lhs = 0, rhs = 0;
    for (std::size_t i = 0; i < col.size(); ++i)
      lhs += double(col[i]) * r[i];
    for (std::size_t i = 0; i < x.size(); ++i)
      rhs += double(x[i]) * back[i];
    BOOST_TEST(std::abs(lhs - rhs) < 1e-4 * (1 + std::abs(lhs)));
    // accumulate adds on top of what is there.
    auto acc = random_vector(x.size());
    auto acc0 = acc;
    col2im(r.data(), g, acc.data(), true);
    std::vector<double> want_acc(x.size());
    for (std::size_t i = 0; i < x.size(); ++i)
      want_acc[i] = double(acc0[i]) + back[i];
    check_close(acc, want_acc, 1e-5, 1e-5, "col2im accumulate");
  }
}

BOOST_AUTO_TEST_CASE(conv2d_forward_matches_direct_convolution) {
  for (const auto& g : geometries())
    for (bool with_bias : {true, false}) {
      const std::int64_t batch = 3, f_n = 4;
      auto x = random_vector(static_cast<std::size_t>(batch * g.channels * g.height * g.width));
      auto w = random_vector(static_cast<std::size_t>(f_n * g.channels * g.kernel_h * g.kernel_w));
      auto b = random_vector(f_n);
      std::vector<float> y(batch * f_n * g.out_h() * g.out_w(),
                           std::numeric_limits<float>::quiet_NaN());
      std::vector<float> col(col_size(g));
      const float* bp = with_bias ? b.data() : nullptr;
      conv2d_forward(x.data(), w.data(), bp, batch, f_n, g, y.data(), col.data());
      check_close(y, ref_conv(x, w, bp, batch, f_n, g), 1e-5, 1e-5, "conv2d_forward");
    }
}

BOOST_AUTO_TEST_CASE(conv2d_backward_matches_reference) {
  for (const auto& g : geometries())
    for (bool accumulate : {false, true}) {
      const std::int64_t batch = 2, f_n = 3, oh_n = g.out_h(), ow_n = g.out_w();
      const std::int64_t ckk = g.channels * g.kernel_h * g.kernel_w;
      auto x = random_vector(static_cast<std::size_t>(batch * g.channels * g.height * g.width));
      auto w = random_vector(static_cast<std::size_t>(f_n * ckk));
      auto dy = random_vector(static_cast<std::size_t>(batch * f_n * oh_n * ow_n));
      // Reference gradients of L = sum(dy * conv(x, w) + b) by direct loops.
      std::vector<double> dx_ref(x.size(), 0.0), dw_ref(w.size(), 0.0), db_ref(f_n, 0.0);
      for (std::int64_t n = 0; n < batch; ++n)
        for (std::int64_t f = 0; f < f_n; ++f)
          for (std::int64_t oh = 0; oh < oh_n; ++oh)
            for (std::int64_t ow = 0; ow < ow_n; ++ow) {
              const double d = dy[((n * f_n + f) * oh_n + oh) * ow_n + ow];
              db_ref[f] += d;
              for (std::int64_t c = 0; c < g.channels; ++c)
                for (std::int64_t i = 0; i < g.kernel_h; ++i)
                  for (std::int64_t j = 0; j < g.kernel_w; ++j) {
                    const std::int64_t ih = oh * g.stride_h - g.pad_h + i;
                    const std::int64_t iw = ow * g.stride_w - g.pad_w + j;
                    const std::int64_t wi =
                        ((f * g.channels + c) * g.kernel_h + i) * g.kernel_w + j;
                    dw_ref[wi] += d * at(x, g, n, c, ih, iw);
                    if (ih >= 0 && ih < g.height && iw >= 0 && iw < g.width)
                      dx_ref[((n * g.channels + c) * g.height + ih) * g.width + iw] += d * w[wi];
                  }
            }
      auto dw = random_vector(w.size()), db = random_vector(f_n);
      auto dw0 = dw, db0 = db;
      if (accumulate) {
        for (std::size_t i = 0; i < dw.size(); ++i)
          dw_ref[i] += dw0[i];
        for (std::int64_t f = 0; f < f_n; ++f)
          db_ref[f] += db0[f];
      }
      std::vector<float> dx(x.size(), std::numeric_limits<float>::quiet_NaN());
      std::vector<float> col(col_size(g));
      conv2d_backward(x.data(), w.data(), dy.data(), batch, f_n, g, dx.data(), dw.data(), db.data(),
                      accumulate, col.data());
      check_close(dx, dx_ref, 1e-5, 1e-5, "conv2d_backward dx");
      check_close(dw, dw_ref, 1e-4, 1e-5, "conv2d_backward dw");
      check_close(db, db_ref, 1e-4, 1e-5, "conv2d_backward db");
      // dx == nullptr (first layer): same weight gradients.
      auto dw2 = dw0, db2 = db0;
      conv2d_backward(x.data(), w.data(), dy.data(), batch, f_n, g, nullptr, dw2.data(), db2.data(),
                      accumulate, col.data());
      check_close(dw2, dw, 0, 0, "conv2d_backward dw without dx");
      check_close(db2, db, 0, 0, "conv2d_backward db without dx");
    }
}

namespace {
// Reference max pooling: padding is -inf, first maximum wins.
void ref_pool(const std::vector<float>& x, std::int64_t batch, const conv_geometry& g,
              std::vector<double>& y, std::vector<std::int32_t>& arg) {
  const std::int64_t oh_n = g.out_h(), ow_n = g.out_w();
  y.assign(batch * g.channels * oh_n * ow_n, 0.0);
  arg.assign(y.size(), -1);
  for (std::int64_t n = 0; n < batch; ++n)
    for (std::int64_t c = 0; c < g.channels; ++c)
      for (std::int64_t oh = 0; oh < oh_n; ++oh)
        for (std::int64_t ow = 0; ow < ow_n; ++ow) {
          double best = -std::numeric_limits<double>::infinity();
          std::int32_t best_i = -1;
          for (std::int64_t i = 0; i < g.kernel_h; ++i)
            for (std::int64_t j = 0; j < g.kernel_w; ++j) {
              const std::int64_t ih = oh * g.stride_h - g.pad_h + i;
              const std::int64_t iw = ow * g.stride_w - g.pad_w + j;
              if (ih < 0 || ih >= g.height || iw < 0 || iw >= g.width)
                continue;
              const double v = x[((n * g.channels + c) * g.height + ih) * g.width + iw];
              if (v > best)
                best = v, best_i = static_cast<std::int32_t>(ih * g.width + iw);
            }
          const std::int64_t o = ((n * g.channels + c) * oh_n + oh) * ow_n + ow;
          y[o] = best, arg[o] = best_i;
        }
}
} // namespace

BOOST_AUTO_TEST_CASE(maxpool_forward_backward) {
  const std::vector<conv_geometry> pools = {
      geom(3, 28, 28, 2, 2, 2, 2, 0, 0), geom(2, 7, 7, 3, 3, 2, 2, 1, 1),
      geom(4, 5, 9, 3, 3, 1, 1, 0, 0), // overlapping windows: gradients add up
      geom(1, 7, 6, 2, 3, 1, 2, 1, 1), geom(2, 1, 1, 1, 1, 1, 1, 0, 0)};
  for (const auto& g : pools) {
    const std::int64_t batch = 3;
    auto x = random_vector(static_cast<std::size_t>(batch * g.channels * g.height * g.width));
    std::vector<double> y_ref;
    std::vector<std::int32_t> arg_ref;
    ref_pool(x, batch, g, y_ref, arg_ref);
    std::vector<float> y(y_ref.size());
    std::vector<std::int32_t> arg(y_ref.size());
    maxpool2d_forward(x.data(), batch, g, y.data(), arg.data());
    check_close(y, y_ref, 0, 0, "maxpool2d_forward");
    BOOST_TEST(arg == arg_ref, boost::test_tools::per_element());

    auto dy = random_vector(y.size());
    std::vector<double> dx_ref(x.size(), 0.0);
    const std::int64_t out_plane = g.out_h() * g.out_w(), in_plane = g.height * g.width;
    for (std::int64_t nc = 0; nc < batch * g.channels; ++nc)
      for (std::int64_t o = 0; o < out_plane; ++o)
        dx_ref[nc * in_plane + arg_ref[nc * out_plane + o]] += dy[nc * out_plane + o];
    std::vector<float> dx(x.size(), 42.f);
    maxpool2d_backward(dy.data(), arg.data(), batch, g, dx.data());
    check_close(dx, dx_ref, 1e-6, 1e-6, "maxpool2d_backward");
  }
}

BOOST_AUTO_TEST_CASE(invalid_geometry_throws) {
  auto g = geom(1, 2, 2, 3, 3, 1, 1, 0, 0); // kernel larger than the input
  std::vector<float> x(4), w(9), y(4), col(36);
  BOOST_CHECK_THROW(conv2d_forward(x.data(), w.data(), nullptr, 1, 1, g, y.data(), col.data()),
                    std::invalid_argument);
}
