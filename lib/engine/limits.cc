#include "lib/engine/limits.h"

#include <vector>

namespace sluice::engine {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t'; }

// Whether a quote at text[i] opens a quoted scalar: only where a scalar can
// start (line start, or after ':', '-', '?', ',', '[' or '{' and blanks), so
// the apostrophe in `it's` is not taken for one.
bool OpensQuote(std::string_view text, size_t i) {
  size_t j = i;
  while (j > 0 && IsSpace(text[j - 1])) --j;
  if (j == 0 || text[j - 1] == '\n') return true;
  const char c = text[j - 1];
  return c == ':' || c == '-' || c == '?' || c == ',' || c == '[' || c == '{';
}

}  // namespace

// A conservative scan, not a YAML parser: it bounds what YAML::Load would
// recurse into. Per line, the block depth is the number of indentation
// levels open (a stack of columns) plus the compact indicators ("- ", "? ")
// that begin the line; flow brackets outside quotes and comments add their
// own depth. It may over-count inside a block scalar (| or >) whose lines
// climb in indentation, never under-count structure.
Status CheckJobFileLimits(std::string_view text, std::string_view file) {
  if (text.size() > kMaxJobFileBytes) {
    return absl::InvalidArgumentError(fmt::format("{}: the job file is {} bytes, more than the limit of {} bytes",
                                                  file, text.size(), kMaxJobFileBytes));
  }
  std::vector<size_t> indents;  // columns of the block levels open
  int flow = 0;                 // flow brackets open
  char quote = 0;               // inside '...' or "..."
  size_t line = 1;
  size_t i = 0;
  auto too_deep = [&](int depth) {
    return absl::InvalidArgumentError(
        fmt::format("{}: line {}: the job file nests {} levels deep, more than the limit of {}", file, line, depth,
                    kMaxJobFileDepth));
  };
  while (i < text.size()) {
    // At a line start: its block depth, unless inside a quoted or flow scalar.
    if (quote == 0 && flow == 0) {
      size_t col = 0;
      while (i + col < text.size() && IsSpace(text[i + col])) ++col;
      const size_t content = i + col;
      if (content < text.size() && text[content] != '\n' && text[content] != '#' && text[content] != '\r') {
        while (!indents.empty() && indents.back() >= col) indents.pop_back();
        indents.push_back(col);
        int depth = static_cast<int>(indents.size());
        size_t k = content;
        while (k + 1 < text.size() && (text[k] == '-' || text[k] == '?') && IsSpace(text[k + 1])) {
          ++depth;
          k += 2;
          while (k < text.size() && IsSpace(text[k])) ++k;
        }
        if (depth > kMaxJobFileDepth) return too_deep(depth);
      }
    }
    // The rest of the line.
    for (; i < text.size() && text[i] != '\n'; ++i) {
      const char c = text[i];
      if (quote != 0) {
        if (quote == '"' && c == '\\') {
          ++i;
          if (i < text.size() && text[i] == '\n') break;
        } else if (c == quote) {
          quote = 0;
        }
        continue;
      }
      if (c == '#' && (i == 0 || IsSpace(text[i - 1]) || text[i - 1] == '\n')) {
        while (i < text.size() && text[i] != '\n') ++i;
        break;
      }
      if ((c == '\'' || c == '"') && OpensQuote(text, i)) {
        quote = c;
      } else if (c == '[' || c == '{') {
        ++flow;
        const int depth = static_cast<int>(indents.size()) + flow;
        if (depth > kMaxJobFileDepth) return too_deep(depth);
      } else if ((c == ']' || c == '}') && flow > 0) {
        --flow;
      }
    }
    if (i < text.size()) {
      ++i;  // the newline
      ++line;
    }
  }
  return absl::OkStatus();
}

Status CheckJobSpecLimits(const proto::JobSpec& spec) {
  const std::string& file = spec.file().empty() ? "job" : spec.file();
  const size_t bytes = spec.ByteSizeLong();
  if (bytes > kMaxJobSpecBytes) {
    return absl::InvalidArgumentError(
        fmt::format("{}: the job spec is {} bytes, more than the limit of {} bytes", file, bytes, kMaxJobSpecBytes));
  }
  if (spec.operators_size() > kMaxOperators) {
    return absl::InvalidArgumentError(fmt::format("{}: operators: {} operators, more than the limit of {}", file,
                                                  spec.operators_size(), kMaxOperators));
  }
  if (spec.inline_sources_size() > kMaxOperators || spec.sources_size() > kMaxOperators) {
    return absl::InvalidArgumentError(fmt::format("{}: sources: {} sources, more than the limit of {}", file,
                                                  std::max(spec.sources_size(), spec.inline_sources_size()),
                                                  kMaxOperators));
  }
  auto config_bytes = [](const google::protobuf::Map<std::string, std::string>& config) {
    size_t n = 0;
    for (const auto& [k, v] : config) n += k.size() + v.size();
    return n;
  };
  for (int i = 0; i < spec.operators_size(); ++i) {
    const proto::OperatorSpec& op = spec.operators(i);
    auto bad = [&](const std::string& field, const std::string& why) {
      return absl::InvalidArgumentError(
          fmt::format("{}: line {}: operators[{}].{}: {}", file, op.line(), i, field, why));
    };
    auto check_expr = [&](const std::string& field, const std::string& text) -> Status {
      if (text.size() > kMaxExprBytes) {
        return bad(field, fmt::format("the expression is {} bytes, more than the limit of {} bytes", text.size(),
                                      kMaxExprBytes));
      }
      return absl::OkStatus();
    };
    if (op.has_filter()) RETURN_IF_ERROR(check_expr("filter.expr", op.filter().expr()));
    if (op.has_map()) {
      for (const auto& [name, expr] : op.map().fields()) RETURN_IF_ERROR(check_expr("map.fields." + name, expr));
    }
    size_t config = 0;
    const char* where = "";
    if (op.has_plugin()) {
      config = config_bytes(op.plugin().config());
      where = "plugin.config";
    } else if (op.has_update_state()) {
      config = config_bytes(op.update_state().config());
      where = "update_state.config";
    }
    if (config > kMaxPluginConfigBytes) {
      return bad(where, fmt::format("the plugin config is {} bytes, more than the limit of {} bytes", config,
                                    kMaxPluginConfigBytes));
    }
  }
  return absl::OkStatus();
}

}  // namespace sluice::engine
