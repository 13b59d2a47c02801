// libFuzzer target: the expression parser (lib/engine/expr.h) and the
// evaluation of what it accepts, over an event whose fields are numbers and
// strings. Any input must end in an expression or INVALID_ARGUMENT.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>

#include "lib/engine/expr.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice;
  using namespace sluice::engine;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  Result<std::unique_ptr<Expr>> e = ParseExpr(text);
  if (!e.ok()) {
    if (!absl::IsInvalidArgument(e.status())) __builtin_trap();
    return 0;
  }
  std::vector<std::string> fields;
  (*e)->Fields(&fields);
  std::deque<std::string> scratch;
  auto lookup = [](std::string_view name) -> Value {
    if (name.empty()) return Null{};
    switch (name[0] % 4) {
      case 0: return static_cast<double>(name.size());
      case 1: return name;
      case 2: return name.size() % 2 == 0;
      default: return Null{};
    }
  };
  (void)Truthy((*e)->Eval(lookup, &scratch));
  return 0;
}
