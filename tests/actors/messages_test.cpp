#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE actors_messages
#include <boost/test/unit_test.hpp>

#include <caf/actor_system.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/message.hpp>
#include <caf/scoped_actor.hpp>

#include "actors/protocol/messages.hpp"
#include "actors/protocol/system_config.hpp"

using namespace troupe::runtime;
using namespace troupe::actors;

namespace {

std::vector<char> serialize(tensor t) {
  std::vector<char> buf;
  caf::binary_serializer sink{nullptr, buf};
  BOOST_REQUIRE(!sink(t));
  return buf;
}

caf::error deserialize(const std::vector<char>& buf, tensor& out) {
  caf::binary_deserializer source{nullptr, buf};
  return source(out);
}

/// Hand-made wire bytes: defined flag, dtype, device kind, device index, rank,
/// extents, payload length, payload.
std::vector<char> wire(std::uint8_t defined, std::uint8_t type, std::uint8_t kind,
                       std::vector<std::int64_t> shape, std::uint64_t payload_len,
                       std::size_t payload_bytes_present) {
  std::vector<char> buf;
  caf::binary_serializer sink{nullptr, buf};
  std::int16_t index = 0;
  auto rank = static_cast<std::uint8_t>(shape.size());
  BOOST_REQUIRE(!sink(defined, type, kind, index, rank));
  for (auto d : shape)
    BOOST_REQUIRE(!sink(d));
  BOOST_REQUIRE(!sink(payload_len));
  buf.resize(buf.size() + payload_bytes_present, 7);
  return buf;
}

} // namespace

BOOST_AUTO_TEST_CASE(tensor_round_trip_is_bitwise) {
  auto t = tensor::empty(dtype::f32, {3, 5, 7});
  auto* p = t.mutable_data<float>();
  for (int i = 0; i < 105; ++i)
    p[i] = static_cast<float>(i) * 0.37f - 11.f;
  for (const auto& x : {t, tensor::zeros(dtype::i64, {0, 4}), tensor::zeros(dtype::u8, {9}),
                        tensor::zeros(dtype::f64, {})}) {
    tensor back;
    BOOST_REQUIRE(!deserialize(serialize(x), back));
    BOOST_TEST(bitwise_equal(x, back));
  }
  tensor undefined, back = tensor::zeros(dtype::f32, {2});
  BOOST_REQUIRE(!deserialize(serialize(undefined), back));
  BOOST_TEST(!back.defined());
}

BOOST_AUTO_TEST_CASE(payload_is_written_in_bulk) {
  // 1M floats: the header is a few dozen bytes, the rest is the raw payload.
  auto t = tensor::zeros(dtype::f32, {1024, 1024});
  auto buf = serialize(t);
  BOOST_TEST(buf.size() < t.nbytes() + 64);
}

BOOST_AUTO_TEST_CASE(malformed_tensor_bytes_are_rejected) {
  tensor out;
  // Unknown dtype code.
  BOOST_TEST(static_cast<bool>(deserialize(wire(1, 42, 0, {2}, 8, 8), out)));
  // Bad defined flag.
  BOOST_TEST(static_cast<bool>(deserialize(wire(3, 0, 0, {2}, 8, 8), out)));
  // CUDA device tensors never arrive as host bytes.
  BOOST_TEST(static_cast<bool>(deserialize(wire(1, 0, 1, {2}, 8, 8), out)));
  // Shape x element size disagrees with the payload length.
  BOOST_TEST(static_cast<bool>(deserialize(wire(1, 0, 0, {3}, 8, 8), out)));
  // Negative extent.
  BOOST_TEST(static_cast<bool>(deserialize(wire(1, 0, 0, {-2}, 8, 8), out)));
  // Overflowing shape.
  BOOST_TEST(static_cast<bool>(
    deserialize(wire(1, 0, 0, {std::int64_t{1} << 40, std::int64_t{1} << 40}, 0, 0), out)));
  // Rank beyond the limit.
  BOOST_TEST(static_cast<bool>(deserialize(wire(1, 0, 0, std::vector<std::int64_t>(9, 1), 4, 4), out)));
  // A huge claimed payload is refused before allocating (cap 1 GiB).
  BOOST_TEST(static_cast<bool>(
    deserialize(wire(1, 0, 0, {std::int64_t{1} << 29, 4}, std::uint64_t{1} << 33, 0), out)));
  // Truncated payload.
  BOOST_TEST(static_cast<bool>(deserialize(wire(1, 0, 0, {4}, 16, 5), out)));
  // Truncated header.
  auto cut = wire(1, 0, 0, {4}, 16, 16);
  cut.resize(5);
  BOOST_TEST(static_cast<bool>(deserialize(cut, out)));
  BOOST_TEST(!out.defined());
}

BOOST_AUTO_TEST_CASE(the_cap_is_configurable_per_actor_system) {
  troupe::actors::system_config cfg;
  cfg.set("troupe.max-tensor-bytes", std::uint64_t{1000});
  caf::actor_system sys{cfg};
  auto small = tensor::zeros(dtype::f32, {250});
  auto large = tensor::zeros(dtype::f32, {251});
  for (auto [t, ok] : {std::pair{small, true}, std::pair{large, false}}) {
    auto buf = serialize(t);
    tensor out;
    caf::binary_deserializer source{sys, buf};
    BOOST_TEST(static_cast<bool>(source(out)) == !ok);
  }
}

BOOST_AUTO_TEST_CASE(every_protocol_type_is_registered_and_round_trips) {
  troupe::actors::system_config cfg;
  caf::actor_system sys{cfg};
  for (const char* name : {"troupe::tensor", "troupe::activation_msg", "troupe::gradient_msg",
                           "troupe::labels_msg", "troupe::step_msg", "troupe::stage_report",
                           "troupe::named_tensors", "troupe::batch_msg"})
    BOOST_TEST(sys.types().make_value(name) != nullptr, name);
  auto x = tensor::zeros(dtype::f32, {2, 3});
  x.mutable_data<float>()[4] = 2.5f;
  auto msg = caf::make_message(activation_msg{7, 3, 128, true, x, 2},
                               named_tensors{{"0.weight"}, {x}, {"steps"}, {"4"}},
                               gradient_msg{7, 3, x, 1});
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  BOOST_REQUIRE(!sink(msg));
  // An unregistered type would serialise to nothing; ours carry the payload.
  BOOST_TEST(buf.size() > 2 * x.nbytes());
  caf::message back;
  caf::binary_deserializer source{sys, buf};
  BOOST_REQUIRE(!source(back));
  BOOST_REQUIRE((back.match_elements<activation_msg, named_tensors, gradient_msg>()));
  const auto& a = back.get_as<activation_msg>(0);
  BOOST_TEST(a.step == 7);
  BOOST_TEST(a.mb == 3);
  BOOST_TEST(a.sample_offset == 128);
  BOOST_TEST(a.chunk == 2);
  BOOST_TEST(bitwise_equal(a.data, x));
  BOOST_TEST(back.get_as<gradient_msg>(2).chunk == 1);
  BOOST_TEST(back.get_as<named_tensors>(1).meta_values.at(0) == "4");
  BOOST_TEST(message_types_hash() != 0u);
}

BOOST_AUTO_TEST_CASE(in_process_sends_share_storage_and_writers_copy) {
  troupe::actors::system_config cfg;
  caf::actor_system sys{cfg};
  // The receiver keeps what it got and reports where its bytes live.
  // (An argument keeps CAF 0.17's function-actor factory away from a null
  // tuple dereference that UBSan reports.)
  auto keeper = sys.spawn([](caf::event_based_actor* self, tensor initial) -> caf::behavior {
    auto kept = std::make_shared<tensor>(std::move(initial));
    return {
      [kept](activation_msg& m) -> std::uint64_t {
        *kept = m.data;
        return reinterpret_cast<std::uintptr_t>(kept->raw_data());
      },
      [kept](get_params_atom) -> float { return kept->values<float>()[0]; },
    };
    (void)self;
  }, tensor{});
  auto x = tensor::zeros(dtype::f32, {1024, 1024});
  x.mutable_data<float>()[0] = 1.f;
  caf::scoped_actor self{sys};
  std::uint64_t where = 0;
  self->request(keeper, caf::infinite, activation_msg{0, 0, 0, true, x})
    .receive([&](std::uint64_t p) { where = p; }, [](caf::error&) { BOOST_FAIL("no reply"); });
  // Zero copy: the receiver holds the sender's bytes.
  BOOST_TEST(where == reinterpret_cast<std::uintptr_t>(x.raw_data()));
  // Copy on write: the sender's next write goes to fresh storage, so the
  // receiver never sees it.
  BOOST_TEST(!x.is_unique());
  x.mutable_data<float>()[0] = 2.f;
  BOOST_TEST(reinterpret_cast<std::uintptr_t>(x.raw_data()) != where);
  float seen = 0;
  self->request(keeper, caf::infinite, get_params_atom::value)
    .receive([&](float v) { seen = v; }, [](caf::error&) { BOOST_FAIL("no reply"); });
  BOOST_TEST(seen == 1.f);
  self->send_exit(keeper, caf::exit_reason::user_shutdown);
}
