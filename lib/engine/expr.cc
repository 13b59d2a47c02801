#include "lib/engine/expr.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <optional>

#include "lib/engine/limits.h"

namespace sluice::engine {
namespace {

enum class Tok { kEnd, kNumber, kString, kName, kOp, kLParen, kRParen, kComma };

struct Token {
  Tok kind = Tok::kEnd;
  std::string text;  // name, operator, or the string's contents
  double number = 0;
  size_t column = 1;
};

Result<std::vector<Token>> Lex(std::string_view s) {
  std::vector<Token> out;
  size_t i = 0;
  auto error = [&](size_t at, const std::string& why) {
    return absl::InvalidArgumentError(fmt::format("column {}: {}", at + 1, why));
  };
  while (i < s.size()) {
    const char c = s[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
      continue;
    }
    Token t;
    t.column = i + 1;
    if (std::isdigit(static_cast<unsigned char>(c)) || (c == '.' && i + 1 < s.size() && std::isdigit(s[i + 1]))) {
      size_t j = i;
      while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) || s[j] == '.' || s[j] == 'e' ||
                              s[j] == 'E' || ((s[j] == '+' || s[j] == '-') && (s[j - 1] == 'e' || s[j - 1] == 'E')))) {
        ++j;
      }
      auto [p, ec] = std::from_chars(s.data() + i, s.data() + j, t.number);
      if (ec != std::errc() || p != s.data() + j) return error(i, fmt::format("bad number '{}'", s.substr(i, j - i)));
      t.kind = Tok::kNumber;
      i = j;
    } else if (c == '\'' || c == '"') {
      size_t j = i + 1;
      while (j < s.size() && s[j] != c) {
        if (s[j] == '\\' && j + 1 < s.size()) ++j;
        t.text.push_back(s[j]);
        ++j;
      }
      if (j >= s.size()) return error(i, "unterminated string");
      t.kind = Tok::kString;
      i = j + 1;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_' || s[j] == '.')) ++j;
      t.kind = Tok::kName;
      t.text = std::string(s.substr(i, j - i));
      i = j;
    } else if (c == '(' || c == ')' || c == ',') {
      t.kind = c == '(' ? Tok::kLParen : c == ')' ? Tok::kRParen : Tok::kComma;
      ++i;
    } else {
      static const char* kOps[] = {"==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "%"};
      bool found = false;
      for (const char* op : kOps) {
        if (s.substr(i).starts_with(op)) {
          t.kind = Tok::kOp;
          t.text = op;
          i += t.text.size();
          found = true;
          break;
        }
      }
      if (!found) {
        if (c == '=') return error(i, "'=' is not an operator; compare with '=='");
        return error(i, fmt::format("unexpected '{}'", c));
      }
    }
    out.push_back(std::move(t));
  }
  Token end;
  end.column = s.size() + 1;
  out.push_back(end);
  return out;
}

std::optional<double> Num(const Value& v) {
  if (const double* d = std::get_if<double>(&v)) return *d;
  return std::nullopt;
}

class Literal final : public Expr {
 public:
  explicit Literal(Value v, std::string storage = "") : storage_(std::move(storage)), v_(v) {
    if (std::holds_alternative<std::string_view>(v_)) v_ = std::string_view(storage_);
  }
  Value Eval(const FieldLookup&, std::deque<std::string>*) const override { return v_; }
  void Fields(std::vector<std::string>*) const override {}

 private:
  std::string storage_;
  Value v_;
};

class Field final : public Expr {
 public:
  explicit Field(std::string name) : name_(std::move(name)) {}
  Value Eval(const FieldLookup& fields, std::deque<std::string>*) const override { return fields(name_); }
  void Fields(std::vector<std::string>* out) const override { out->push_back(name_); }

 private:
  std::string name_;
};

class Unary final : public Expr {
 public:
  Unary(std::string op, std::unique_ptr<Expr> a) : op_(std::move(op)), a_(std::move(a)) {}
  Value Eval(const FieldLookup& f, std::deque<std::string>* scratch) const override {
    Value v = a_->Eval(f, scratch);
    if (op_ == "not") return !Truthy(v);
    if (auto n = Num(v)) return -*n;
    return Null{};
  }
  void Fields(std::vector<std::string>* out) const override { a_->Fields(out); }

 private:
  std::string op_;
  std::unique_ptr<Expr> a_;
};

class Binary final : public Expr {
 public:
  Binary(std::string op, std::unique_ptr<Expr> a, std::unique_ptr<Expr> b)
      : op_(std::move(op)), kind_(KindOf(op_)), a_(std::move(a)), b_(std::move(b)) {}
  Value Eval(const FieldLookup& f, std::deque<std::string>* scratch) const override {
    if (kind_ == kAnd) return Truthy(a_->Eval(f, scratch)) && Truthy(b_->Eval(f, scratch));
    if (kind_ == kOr) return Truthy(a_->Eval(f, scratch)) || Truthy(b_->Eval(f, scratch));
    const Value x = a_->Eval(f, scratch);
    const Value y = b_->Eval(f, scratch);
    if (kind_ >= kEq) {
      int cmp = 0;
      bool comparable = true;
      if (x.index() != y.index() || std::holds_alternative<Null>(x)) {
        comparable = false;
      } else if (auto a = Num(x)) {
        const double b = *Num(y);
        cmp = *a < b ? -1 : *a > b ? 1 : 0;
      } else if (const auto* a = std::get_if<std::string_view>(&x)) {
        const int c = a->compare(std::get<std::string_view>(y));
        cmp = c < 0 ? -1 : c > 0 ? 1 : 0;
      } else {
        const bool p = std::get<bool>(x), q = std::get<bool>(y);
        cmp = p == q ? 0 : (p ? 1 : -1);
      }
      if (kind_ == kNe) return !comparable || cmp != 0;
      if (!comparable) return false;
      if (kind_ == kEq) return cmp == 0;
      if (kind_ == kLt) return cmp < 0;
      if (kind_ == kLe) return cmp <= 0;
      if (kind_ == kGt) return cmp > 0;
      return cmp >= 0;
    }
    auto a = Num(x), b = Num(y);
    if (!a || !b) return Null{};
    if (kind_ == kAdd) return *a + *b;
    if (kind_ == kSub) return *a - *b;
    if (kind_ == kMul) return *a * *b;
    if (*b == 0) return Null{};
    if (kind_ == kDiv) return *a / *b;
    return std::fmod(*a, *b);
  }
  void Fields(std::vector<std::string>* out) const override {
    a_->Fields(out);
    b_->Fields(out);
  }

 private:
  // The operator, resolved once rather than compared as text per Eval.
  // Comparisons last: kind_ >= kEq is "a comparison".
  enum Kind { kAnd, kOr, kAdd, kSub, kMul, kDiv, kMod, kEq, kNe, kLt, kLe, kGt, kGe };
  static Kind KindOf(const std::string& op) {
    static const std::pair<const char*, Kind> kKinds[] = {
        {"and", kAnd}, {"or", kOr}, {"+", kAdd}, {"-", kSub}, {"*", kMul}, {"/", kDiv}, {"%", kMod},
        {"==", kEq},   {"!=", kNe}, {"<", kLt},  {"<=", kLe}, {">", kGt},  {">=", kGe}};
    for (const auto& [text, kind] : kKinds) {
      if (op == text) return kind;
    }
    return kMod;  // the parser makes no other operator; "%" is the last arithmetic one
  }

  std::string op_;
  Kind kind_;
  std::unique_ptr<Expr> a_, b_;
};

class Call final : public Expr {
 public:
  Call(std::string name, std::vector<std::unique_ptr<Expr>> args) : name_(std::move(name)), args_(std::move(args)) {}
  Value Eval(const FieldLookup& f, std::deque<std::string>* scratch) const override {
    std::vector<Value> v;
    for (const auto& a : args_) v.push_back(a->Eval(f, scratch));
    const auto* s0 = std::get_if<std::string_view>(&v[0]);
    if (name_ == "length") return s0 ? Value(static_cast<double>(s0->size())) : Value(Null{});
    if (name_ == "lower" || name_ == "upper") {
      if (!s0) return Null{};
      std::string out(*s0);
      for (char& c : out) c = static_cast<char>(name_ == "lower" ? std::tolower(c) : std::toupper(c));
      scratch->push_back(std::move(out));
      return std::string_view(scratch->back());
    }
    const auto* s1 = std::get_if<std::string_view>(&v[1]);
    if (!s0 || !s1) return false;
    if (name_ == "contains") return s0->find(*s1) != std::string_view::npos;
    if (name_ == "starts_with") return s0->starts_with(*s1);
    return s0->ends_with(*s1);
  }
  void Fields(std::vector<std::string>* out) const override {
    for (const auto& a : args_) a->Fields(out);
  }

 private:
  std::string name_;
  std::vector<std::unique_ptr<Expr>> args_;
};

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  Result<std::unique_ptr<Expr>> Parse() {
    ASSIGN_OR_RETURN(auto e, Or());
    if (Peek().kind != Tok::kEnd) return Error(Peek(), fmt::format("unexpected '{}'", Describe(Peek())));
    return e;
  }

 private:
  const Token& Peek() const { return t_[i_]; }
  Token Next() { return t_[i_ < t_.size() - 1 ? i_++ : i_]; }
  bool IsWord(const char* w) const { return Peek().kind == Tok::kName && Peek().text == w; }
  bool IsOp(const char* op) const { return Peek().kind == Tok::kOp && Peek().text == op; }
  static std::string Describe(const Token& t) {
    switch (t.kind) {
      case Tok::kEnd: return "end of expression";
      case Tok::kNumber: return fmt::format("{}", t.number);
      case Tok::kString: return "'" + t.text + "'";
      case Tok::kLParen: return "(";
      case Tok::kRParen: return ")";
      case Tok::kComma: return ",";
      default: return t.text;
    }
  }
  static Status Error(const Token& t, const std::string& why) {
    return absl::InvalidArgumentError(fmt::format("column {}: {}", t.column, why));
  }

  // Every recursion of the parser goes through Nest, so the stack it uses
  // is bounded by kMaxExprDepth whatever the input.
  class Nest {
   public:
    explicit Nest(int* depth) : depth_(depth) { ++*depth_; }
    ~Nest() { --*depth_; }
    Nest(const Nest&) = delete;
    Nest& operator=(const Nest&) = delete;

   private:
    int* depth_;
  };
  Status CheckDepth(const Token& t) const {
    if (depth_ > kMaxExprDepth) {
      return Error(t, fmt::format("the expression nests deeper than the limit of {} (parentheses, not, -, "
                                  "function calls)",
                                  kMaxExprDepth));
    }
    return absl::OkStatus();
  }

  Result<std::unique_ptr<Expr>> Or() {
    ASSIGN_OR_RETURN(auto left, And());
    while (IsWord("or")) {
      Next();
      ASSIGN_OR_RETURN(auto right, And());
      left = std::make_unique<Binary>("or", std::move(left), std::move(right));
    }
    return left;
  }
  Result<std::unique_ptr<Expr>> And() {
    ASSIGN_OR_RETURN(auto left, Not());
    while (IsWord("and")) {
      Next();
      ASSIGN_OR_RETURN(auto right, Not());
      left = std::make_unique<Binary>("and", std::move(left), std::move(right));
    }
    return left;
  }
  Result<std::unique_ptr<Expr>> Not() {
    if (IsWord("not")) {
      Nest nest(&depth_);
      RETURN_IF_ERROR(CheckDepth(Next()));
      ASSIGN_OR_RETURN(auto a, Not());
      return std::unique_ptr<Expr>(std::make_unique<Unary>("not", std::move(a)));
    }
    return Compare();
  }
  Result<std::unique_ptr<Expr>> Compare() {
    ASSIGN_OR_RETURN(auto left, Sum());
    for (const char* op : {"==", "!=", "<=", ">=", "<", ">"}) {
      if (IsOp(op)) {
        Next();
        ASSIGN_OR_RETURN(auto right, Sum());
        return std::unique_ptr<Expr>(std::make_unique<Binary>(op, std::move(left), std::move(right)));
      }
    }
    return left;
  }
  Result<std::unique_ptr<Expr>> Sum() {
    ASSIGN_OR_RETURN(auto left, Product());
    while (IsOp("+") || IsOp("-")) {
      const std::string op = Next().text;
      ASSIGN_OR_RETURN(auto right, Product());
      left = std::make_unique<Binary>(op, std::move(left), std::move(right));
    }
    return left;
  }
  Result<std::unique_ptr<Expr>> Product() {
    ASSIGN_OR_RETURN(auto left, UnaryMinus());
    while (IsOp("*") || IsOp("/") || IsOp("%")) {
      const std::string op = Next().text;
      ASSIGN_OR_RETURN(auto right, UnaryMinus());
      left = std::make_unique<Binary>(op, std::move(left), std::move(right));
    }
    return left;
  }
  Result<std::unique_ptr<Expr>> UnaryMinus() {
    if (IsOp("-")) {
      Nest nest(&depth_);
      RETURN_IF_ERROR(CheckDepth(Next()));
      ASSIGN_OR_RETURN(auto a, UnaryMinus());
      return std::unique_ptr<Expr>(std::make_unique<Unary>("-", std::move(a)));
    }
    return Primary();
  }
  Result<std::unique_ptr<Expr>> Primary() {
    const Token t = Next();
    switch (t.kind) {
      case Tok::kNumber:
        return std::unique_ptr<Expr>(std::make_unique<Literal>(t.number));
      case Tok::kString:
        return std::unique_ptr<Expr>(std::make_unique<Literal>(std::string_view(), t.text));
      case Tok::kLParen: {
        Nest nest(&depth_);
        RETURN_IF_ERROR(CheckDepth(t));
        ASSIGN_OR_RETURN(auto e, Or());
        if (Peek().kind != Tok::kRParen) return Error(Peek(), "expected ')'");
        Next();
        return e;
      }
      case Tok::kName: {
        if (t.text == "true" || t.text == "false") {
          return std::unique_ptr<Expr>(std::make_unique<Literal>(t.text == "true"));
        }
        if (t.text == "null") return std::unique_ptr<Expr>(std::make_unique<Literal>(Null{}));
        if (t.text == "and" || t.text == "or" || t.text == "not") {
          return Error(t, fmt::format("'{}' needs a value before it", t.text));
        }
        if (Peek().kind != Tok::kLParen) return std::unique_ptr<Expr>(std::make_unique<Field>(t.text));
        static const std::vector<std::pair<std::string, int>> kFunctions = {
            {"contains", 2}, {"starts_with", 2}, {"ends_with", 2}, {"lower", 1}, {"upper", 1}, {"length", 1}};
        auto f = std::find_if(kFunctions.begin(), kFunctions.end(), [&](const auto& p) { return p.first == t.text; });
        if (f == kFunctions.end()) {
          return Error(t, fmt::format("unknown function '{}' (contains, starts_with, ends_with, lower, upper, length)",
                                      t.text));
        }
        Next();  // (
        Nest nest(&depth_);
        RETURN_IF_ERROR(CheckDepth(t));
        std::vector<std::unique_ptr<Expr>> args;
        if (Peek().kind != Tok::kRParen) {
          while (true) {
            ASSIGN_OR_RETURN(auto a, Or());
            args.push_back(std::move(a));
            if (Peek().kind != Tok::kComma) break;
            Next();
          }
        }
        if (Peek().kind != Tok::kRParen) return Error(Peek(), "expected ')' or ','");
        Next();
        if (static_cast<int>(args.size()) != f->second) {
          return Error(t, fmt::format("{}() takes {} argument{}, not {}", t.text, f->second,
                                      f->second == 1 ? "" : "s", args.size()));
        }
        return std::unique_ptr<Expr>(std::make_unique<Call>(t.text, std::move(args)));
      }
      default:
        return Error(t, fmt::format("expected a value, found {}", Describe(t)));
    }
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;  // nesting open (Nest)
};

}  // namespace

bool Truthy(const Value& v) {
  if (const bool* b = std::get_if<bool>(&v)) return *b;
  if (const double* d = std::get_if<double>(&v)) return *d != 0;
  if (const auto* s = std::get_if<std::string_view>(&v)) return !s->empty();
  return false;
}

Result<std::unique_ptr<Expr>> ParseExpr(std::string_view text) {
  if (text.size() > kMaxExprBytes) {
    return absl::InvalidArgumentError(
        fmt::format("the expression is {} bytes, more than the limit of {} bytes", text.size(), kMaxExprBytes));
  }
  ASSIGN_OR_RETURN(std::vector<Token> tokens, Lex(text));
  if (tokens.size() == 1) return absl::InvalidArgumentError("column 1: the expression is empty");
  return Parser(std::move(tokens)).Parse();
}

}  // namespace sluice::engine
