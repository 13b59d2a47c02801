// Unit tests of the map-side combiner, the shuffle row format and the
// reduce-side merge (lib/engine/combiner.h): word count across map tasks and
// reduce partitions against a reference, byte-identical output for shuffled
// input, several aggregations at once, malformed buffers, pinned partitions.
#include "lib/engine/combiner.h"

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::engine {
namespace {

using ::testing::HasSubstr;

proto::AggregateOp Op(const std::vector<std::pair<std::string, std::string>>& fn_field) {
  proto::AggregateOp op;
  for (const auto& [fn, field] : fn_field) {
    proto::Aggregation* a = op.add_aggregations();
    a->set_fn(fn);
    a->set_field(field);
    a->set_as(fn == "count" ? "count" : fn + "_" + field);
  }
  return op;
}

std::unique_ptr<Combiner> MakeCombiner(const proto::AggregateOp& op, uint32_t r) {
  Result<std::unique_ptr<Combiner>> c = Combiner::Create(op, r);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? std::move(*c) : nullptr;
}

std::unique_ptr<ShuffleReader> MakeReader(const proto::AggregateOp& op) {
  Result<std::unique_ptr<ShuffleReader>> r = ShuffleReader::Create(op);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? std::move(*r) : nullptr;
}

std::string Key(std::vector<Value> parts) {
  std::string key;
  for (const Value& v : parts) AppendKeyPart(v, &key);
  return key;
}

std::vector<std::string> RandomWords(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::string> words;
  for (size_t i = 0; i < n; ++i) {
    // Skewed: a few frequent words, a long tail, varying lengths.
    const uint64_t id = (rng() % 7 == 0) ? rng() % 500 : rng() % 20;
    words.push_back(std::string(1 + id % 5, static_cast<char>('a' + id % 26)) +
                    std::to_string(id));
  }
  return words;
}

// Word count: 3 map tasks over arbitrary slices, R=4, merged per partition.
TEST(CombinerTest, WordCountAcrossMapTasksAndPartitions) {
  constexpr uint32_t kR = 4;
  const proto::AggregateOp op = Op({{"count", ""}});
  const std::vector<std::string> words = RandomWords(20000, 7);
  std::map<std::string, int64_t> reference;
  for (const std::string& w : words) ++reference[w];

  std::mt19937_64 rng(11);
  std::vector<size_t> order(words.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  const size_t cut1 = words.size() / 5, cut2 = words.size() / 2;

  std::vector<std::vector<std::string>> task_buffers;  // [task][partition]
  for (auto [begin, end] : {std::pair{cut2, words.size()}, std::pair{size_t{0}, cut1},
                            std::pair{cut1, cut2}}) {
    std::unique_ptr<Combiner> c = MakeCombiner(op, kR);
    ASSERT_NE(c, nullptr);
    for (size_t i = begin; i < end; ++i) {
      const Value none[] = {Null{}};
      ASSERT_TRUE(c->Add(Key({std::string_view(words[order[i]])}), none).ok());
    }
    task_buffers.push_back(c->Finish());
    ASSERT_EQ(task_buffers.back().size(), kR);
    EXPECT_EQ(c->num_keys(), 0u);
  }

  proto::Aggregation count_spec;
  count_spec.set_fn("count");
  std::unique_ptr<Aggregator> count = std::move(*Aggregator::Create(count_spec));
  std::vector<std::unique_ptr<ShuffleReader>> readers;
  size_t total_keys = 0;
  for (uint32_t p = 0; p < kR; ++p) {
    readers.push_back(MakeReader(op));
    for (size_t t : {2, 0, 1}) {
      ASSERT_TRUE(readers[p]->MergeRows(task_buffers[t][p]).ok());
    }
    total_keys += readers[p]->num_keys();
    EXPECT_GT(readers[p]->num_keys(), 0u) << "partition " << p;
  }
  EXPECT_EQ(total_keys, reference.size());
  std::unique_ptr<Combiner> probe = MakeCombiner(op, kR);
  for (const auto& [word, n] : reference) {
    const std::string key = Key({std::string_view(word)});
    const uint32_t home = probe->Partition(key);
    for (uint32_t p = 0; p < kR; ++p) {
      const std::vector<std::string>* states = readers[p]->Find(key);
      if (p != home) {
        EXPECT_EQ(states, nullptr) << word << " also in partition " << p;
        continue;
      }
      ASSERT_NE(states, nullptr) << word << " missing from partition " << p;
      std::string json;
      ASSERT_TRUE(count->AppendResult((*states)[0], &json).ok());
      EXPECT_EQ(json, std::to_string(n)) << word;
    }
  }
}

// The same rows in another order, and in another split of Add calls, give
// byte-identical buffers.
TEST(CombinerTest, ShuffledInputGivesIdenticalBuffers) {
  proto::AggregateOp op =
      Op({{"count", ""}, {"min", "x"}, {"count_distinct", "x"}, {"top_k", "x"}});
  op.mutable_aggregations(3)->set_k(3);
  std::mt19937_64 rng(3);
  std::vector<std::pair<std::string, double>> rows;
  const std::vector<std::string> words = RandomWords(3000, 5);
  for (const std::string& w : words) rows.emplace_back(w, static_cast<double>(rng() % 50));

  auto run = [&](const std::vector<std::pair<std::string, double>>& in) {
    std::unique_ptr<Combiner> c = MakeCombiner(op, 4);
    for (const auto& [w, x] : in) {
      const Value values[] = {Null{}, x, x, x};
      EXPECT_TRUE(c->Add(Key({std::string_view(w)}), values).ok());
    }
    return c->Finish();
  };
  const std::vector<std::string> first = run(rows);
  std::shuffle(rows.begin(), rows.end(), rng);
  const std::vector<std::string> second = run(rows);
  ASSERT_EQ(first.size(), 4u);
  for (size_t p = 0; p < first.size(); ++p) {
    EXPECT_FALSE(first[p].empty());
    EXPECT_TRUE(first[p] == second[p]) << "partition " << p << " differs";
  }
}

TEST(CombinerTest, SumAvgCountTogether) {
  const proto::AggregateOp op = Op({{"sum", "x"}, {"avg", "x"}, {"count", ""}});
  std::unique_ptr<Combiner> a = MakeCombiner(op, 1);
  std::unique_ptr<Combiner> b = MakeCombiner(op, 1);
  auto add = [](Combiner* c, const std::string& key, Value x) {
    const Value values[] = {x, x, Null{}};
    ASSERT_TRUE(c->Add(key, values).ok());
  };
  const std::string alice = Key({std::string_view("alice"), 1.0});
  const std::string bob = Key({std::string_view("bob"), Null{}});
  add(a.get(), alice, 1.5);
  add(a.get(), bob, std::string_view("not a number"));
  add(b.get(), alice, 2.5);
  add(b.get(), alice, Null{});
  add(b.get(), alice, -1.0);
  add(b.get(), bob, true);

  std::unique_ptr<ShuffleReader> reader = MakeReader(op);
  ASSERT_TRUE(reader->MergeRows(b->Finish()[0]).ok());
  ASSERT_TRUE(reader->MergeRows(a->Finish()[0]).ok());
  std::string out;
  ASSERT_TRUE(reader->AppendResults(&out).ok());
  // Key byte order: the length prefix first, so the shorter "bob" key sorts first.
  EXPECT_EQ(out,
            "{\"key\":[\"bob\",null],\"sum_x\":null,\"avg_x\":null,\"count\":2}\n"
            "{\"key\":[\"alice\",1],\"sum_x\":3,\"avg_x\":1,\"count\":4}\n");
}

TEST(CombinerTest, TruncatedOrMalformedBufferIsDataLoss) {
  const proto::AggregateOp op = Op({{"count", ""}, {"max", "x"}});
  std::unique_ptr<Combiner> c = MakeCombiner(op, 1);
  const Value values[] = {Null{}, 4.0};
  ASSERT_TRUE(c->Add(Key({std::string_view("k")}), values).ok());
  const std::string one_row = c->Finish()[0];
  ASSERT_FALSE(one_row.empty());
  // Every proper prefix of a single row is truncated.
  for (size_t len = 1; len < one_row.size(); ++len) {
    std::unique_ptr<ShuffleReader> reader = MakeReader(op);
    Status s = reader->MergeRows(std::string_view(one_row).substr(0, len));
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << "prefix " << len;
    EXPECT_THAT(s.message(), HasSubstr("truncated"));
    EXPECT_EQ(reader->num_keys(), 0u);
  }
  // A multi-row buffer missing its last byte: nothing of it is merged.
  for (const char* k : {"a", "b", "c"}) ASSERT_TRUE(c->Add(Key({std::string_view(k)}), values).ok());
  const std::string rows = c->Finish()[0];
  std::unique_ptr<ShuffleReader> reader = MakeReader(op);
  EXPECT_EQ(reader->MergeRows(std::string_view(rows).substr(0, rows.size() - 1)).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(reader->num_keys(), 0u);
  // Rows out of order (two buffers glued together), a runaway varint.
  Status s = reader->MergeRows(rows + rows);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("ascending"));
  EXPECT_EQ(reader->MergeRows(std::string(11, '\xff')).code(), absl::StatusCode::kDataLoss);
  // A well-framed row whose state is not a count state: Merge's DATA_LOSS.
  // Row: key "\x02sk", a 7-byte count state, an empty max state.
  const std::string bad_state = std::string("\x03\x02sk\x07", 5) + std::string(7, '\0') +
                                std::string(1, '\0');
  EXPECT_EQ(MakeReader(op)->MergeRows(bad_state).code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(reader->MergeRows(rows).ok());
  EXPECT_EQ(reader->num_keys(), 3u);
}

TEST(CombinerTest, OnePartitionHoldsEverything) {
  const proto::AggregateOp op = Op({{"count", ""}});
  std::unique_ptr<Combiner> c = MakeCombiner(op, 1);
  for (const std::string& w : RandomWords(500, 9)) {
    EXPECT_EQ(c->Partition(w), 0u);
    const Value none[] = {Null{}};
    ASSERT_TRUE(c->Add(Key({std::string_view(w)}), none).ok());
  }
  const size_t keys = c->num_keys();
  const std::vector<std::string> buffers = c->Finish();
  ASSERT_EQ(buffers.size(), 1u);
  std::unique_ptr<ShuffleReader> reader = MakeReader(op);
  ASSERT_TRUE(reader->MergeRows(buffers[0]).ok());
  EXPECT_EQ(reader->num_keys(), keys);
}

// The partition of a key must never drift: map tasks and reducers of a
// running job (and workers of different builds) must agree.
TEST(CombinerTest, PartitionsArePinned) {
  EXPECT_EQ(StableHash64("alice"), 0x1a046f573e1e5475u);
  EXPECT_EQ(PartitionOf("alice", 16), 5u);
  EXPECT_EQ(PartitionOf("bob", 16), 12u);
  EXPECT_EQ(PartitionOf("alice", 1000), 941u);
  EXPECT_EQ(PartitionOf("bob", 1000), 156u);
  EXPECT_EQ(PartitionOf(Key({std::string_view("alice")}), 1000), 456u);
  EXPECT_EQ(MakeCombiner(Op({{"count", ""}}), 16)->Partition("bob"), 12u);
}

// Two map tasks' count_distinct states, each under the limit, exceed it when
// merged: the reducer's MergeRows returns Merge's RESOURCE_EXHAUSTED. The
// states are built by hand (aggregate.h encoding): Add-ing 100k distinct
// values one by one is quadratic.
TEST(CombinerTest, LimitErrorsPropagate) {
  const proto::AggregateOp op = Op({{"count_distinct", "x"}});
  auto row = [](size_t first, size_t n) {
    std::string state, vk;
    for (size_t i = first; i < first + n; ++i) {
      EXPECT_TRUE(EncodeValueKey(static_cast<double>(i), &vk));
      state.push_back(static_cast<char>(vk.size()));
      state.append(vk);
    }
    std::string out = Key({std::string_view("k")});
    out.insert(0, 1, static_cast<char>(out.size()));
    std::string len;
    for (uint64_t v = state.size(); ; v >>= 7) {
      if (v < 0x80) { len.push_back(static_cast<char>(v)); break; }
      len.push_back(static_cast<char>((v & 0x7f) | 0x80));
    }
    return out + len + state;
  };
  const size_t half = kMaxDistinctValues / 2 + 1;
  std::unique_ptr<ShuffleReader> reader = MakeReader(op);
  ASSERT_TRUE(reader->MergeRows(row(0, half)).ok());
  Status s = reader->MergeRows(row(half, half));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
}

TEST(CombinerTest, BadArguments) {
  EXPECT_EQ(Combiner::Create(Op({{"count", ""}}), 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Combiner::Create(proto::AggregateOp(), 2).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ShuffleReader::Create(Op({{"nope", "x"}})).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::unique_ptr<Combiner> c = MakeCombiner(Op({{"count", ""}, {"sum", "x"}}), 2);
  const Value one[] = {1.0};
  EXPECT_EQ(c->Add("k", one).code(), absl::StatusCode::kInvalidArgument);
  std::string out;
  EXPECT_EQ(AppendKeyJson("\x05", &out).code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace sluice::engine
