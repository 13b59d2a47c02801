// A plugin for plugin_test: what the example does not show.
//   - Each operator emits every event twice, with a field "instance"
//     (1, 2, ... in order of creation): one Operator per Pipeline.
//   - An event with a field "boom" throws from Process (a dead letter).
//   - config {throw: yes} throws from create(); {refuse: yes} returns
//     nullptr with no message.
//   - test_plugin_live() counts the operators not yet destroyed.
#include <atomic>
#include <stdexcept>
#include <vector>

#include "lib/engine/plugin_api.h"

namespace {

std::atomic<int> created{0};
std::atomic<int> live{0};

class Twice final : public sluice::plugin::Operator {
 public:
  explicit Twice(int instance) : instance_(instance) { ++live; }
  ~Twice() override { --live; }

  void Process(const sluice::plugin::Event& in, sluice::plugin::Emitter& out) override {
    if (in.Find("boom") != nullptr) throw std::runtime_error("boom");
    fields_.assign(in.begin(), in.end());
    fields_.push_back({"instance", sluice::plugin::Value::Number(instance_)});
    out.Emit(fields_.data(), fields_.size());
    out.Emit(fields_.data(), fields_.size());
  }

 private:
  const int instance_;
  std::vector<sluice::plugin::Field> fields_;
};

}  // namespace

SLUICE_PLUGIN_DEFINE_VERSION()

extern "C" sluice::plugin::Operator* sluice_plugin_v1_create(const sluice::plugin::Config* config, char*, size_t) {
  if (config->Find("throw") != nullptr) throw std::runtime_error("create was told to throw");
  if (config->Find("refuse") != nullptr) return nullptr;
  return new Twice(++created);
}

extern "C" __attribute__((visibility("default"))) int test_plugin_live(void) { return live.load(); }
