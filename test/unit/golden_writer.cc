// golden_writer ROOT: writes, with this build, the golden files of each
// persisted format whose current number has none yet: ROOT/<format>/v<N>/db
// (a driver WAL, a state store, a block log) and ROOT/<format>/v<N>/expected.txt,
// what golden_test must read back from it. Existing goldens are never
// rewritten (docs/upgrade.md, "When a format changes").
#include <filesystem>
#include <iostream>

#include "lib/common/version.h"
#include "test/harness/util.h"
#include "test/unit/golden.h"

namespace {

using sluice::Result;
using sluice::Status;

Status WriteOne(const std::string& root, const std::string& name, int format, Status (*write)(const std::string&),
                Result<std::string> (*dump)(const std::string&)) {
  const std::string at = fmt::format("{}/{}/v{}", root, name, format);
  if (std::filesystem::exists(at)) {
    std::cout << at << " exists: kept as it is\n";
    return absl::OkStatus();
  }
  std::filesystem::create_directories(at);
  RETURN_IF_ERROR_PREPEND(write(at + "/db"), "writing " + at);
  sluice::testing::TempDir tmp("sluice-golden");
  RETURN_IF_ERROR(sluice::golden::CopyDb(at + "/db", tmp.Sub("db")));
  ASSIGN_OR_RETURN(std::string text, dump(tmp.Sub("db")));
  std::cout << at << " written\n";
  return sluice::testing::WriteFile(at + "/expected.txt", text);
}

}  // namespace

// --redump ROOT NAME V: rewrites NAME/vV/expected.txt as this build reads
// the committed db — for a reader that now derives more from the same bytes
// on purpose (review the diff: the db itself never changes).
int Redump(const std::string& root, const std::string& name, const std::string& v) {
  namespace g = sluice::golden;
  Result<std::string> (*dump)(const std::string&) =
      name == g::kWal ? g::DumpWal : name == g::kState ? g::DumpState : name == g::kBlockLog ? g::DumpBlockLog : nullptr;
  if (dump == nullptr) {
    std::cerr << "golden_writer: no golden named " << name << "\n";
    return 2;
  }
  const std::string at = fmt::format("{}/{}/v{}", root, name, v);
  sluice::testing::TempDir tmp("sluice-golden");
  Status copied = g::CopyDb(at + "/db", tmp.Sub("db"));
  Result<std::string> text = copied.ok() ? dump(tmp.Sub("db")) : Result<std::string>(copied);
  if (!text.ok() || !sluice::testing::WriteFile(at + "/expected.txt", *text).ok()) {
    std::cerr << "golden_writer: " << at << ": " << (text.ok() ? "cannot write expected.txt" : text.status().ToString())
              << "\n";
    return 1;
  }
  std::cout << at << "/expected.txt rewritten\n";
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 5 && std::string(argv[1]) == "--redump") return Redump(argv[2], argv[3], argv[4]);
  if (argc != 2) {
    std::cerr << "usage: golden_writer ROOT   (test/golden)\n       golden_writer --redump ROOT NAME V\n";
    return 2;
  }
  const std::string root = argv[1];
  namespace g = sluice::golden;
  namespace v = sluice::version;
  for (Status st : {WriteOne(root, g::kWal, v::kWalFormat, g::WriteWal, g::DumpWal),
                    WriteOne(root, g::kState, v::kStateStoreFormat, g::WriteState, g::DumpState),
                    WriteOne(root, g::kBlockLog, v::kBlockLogFormat, g::WriteBlockLog, g::DumpBlockLog)}) {
    if (!st.ok()) {
      std::cerr << "golden_writer: " << st << "\n";
      return 1;
    }
  }
  std::cout << "golden files of " << sluice::kVersion << " under " << root << "\n";
  return 0;
}
