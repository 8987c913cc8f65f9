// The stored form of a change: ChangeToJson writes it straight into a string, and must give the
// very text that building it through nlohmann::json gives (ChangeToJsonForTest), for every kind
// of value: escapes and control characters, multi-byte UTF-8, text that is not UTF-8, JSON
// field values, reals, NULLs, hashes and empty lists. And ChangeFromJson reads it back.
#include "envsync/store/json_codec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

namespace envsync::store {
namespace {

Change Sample(const std::string& text) {
  Change c;
  c.tab = Tab::kConflicts;
  c.module = "cms_pages";
  c.table = "cms_pages";
  c.source_id = int64_t{42};
  c.target_id = Value();
  c.key = text;
  c.selected = true;
  c.conflict = Conflict::kBothModified;
  c.mergeable = true;
  c.reason = Reason::kNone;
  c.required_by = {"menus:1", text};
  FieldDiff plain;
  plain.field = "title";
  plain.source = text;
  plain.target = std::string("plain");
  plain.base = text;
  plain.base_known = true;
  FieldDiff real;
  real.field = "price";
  real.source = 1.0;
  real.target = 0.1;
  real.base = int64_t{-7};
  real.base_known = false;
  FieldDiff children;
  children.field = "slides";
  children.json = true;
  children.source = std::string(R"([{"position":1,"caption":"a\"b"}])");
  children.target = std::string("not json {");
  children.base = Value();
  children.base_known = true;
  c.fields = {plain, real, children};
  c.source_hash = 0x0123456789abcdefULL;
  c.target_hash = std::nullopt;
  return c;
}

TEST(ChangeJsonTest, WritesWhatNlohmannWritesForEveryKindOfText) {
  const std::vector<std::string> texts = {
      "",
      "plain text",
      "quote \" backslash \\ slash /",
      std::string("controls \b\f\n\r\t \x01 \x1f \x7f end"),
      "UTF-8: caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
      "not UTF-8: \xff\xfe and a lone \xc3",
      "overlong \xc0\xaf and a surrogate \xed\xa0\x80",
      std::string("NUL \0 inside", 12),
  };
  for (const std::string& text : texts) {
    const Change change = Sample(text);
    EXPECT_EQ(ChangeToJson(change), ChangeToJsonForTest(change)) << text;
  }
  // Random bytes, with a seed so a failure can be replayed.
  std::mt19937 random(20261201);
  for (int i = 0; i < 2000; ++i) {
    std::string text(static_cast<size_t>(random() % 40), '\0');
    for (char& ch : text) ch = static_cast<char>(random() % 256);
    const Change change = Sample(text);
    ASSERT_EQ(ChangeToJson(change), ChangeToJsonForTest(change)) << "case " << i;
  }
  // Long runs of plain ASCII (the eight-bytes-at-a-time paths of the writer and of the UTF-8
  // check) broken, at random places, by what must be escaped, multi-byte UTF-8 or bad bytes.
  const std::vector<std::string> breaks = {"\"",   "\\",       "\n",           "\x01", "\x1f",
                                           "\x7f", "\xc3\xa9", "\xe2\x82\xac", "\xff", "\xc3"};
  for (int i = 0; i < 2000; ++i) {
    std::string text;
    const size_t length = random() % 200;
    while (text.size() < length) {
      if (random() % 32 == 0) {
        text += breaks[random() % breaks.size()];
      } else {
        text.push_back(static_cast<char>(' ' + random() % 95));
      }
    }
    const Change change = Sample(text);
    ASSERT_EQ(ChangeToJson(change), ChangeToJsonForTest(change)) << "ASCII case " << i;
  }
}

TEST(ChangeJsonTest, ReadsBackWhatItWrote) {
  Change change = Sample("caf\xc3\xa9 \"quoted\"\n");
  change.target_hash = 7;
  auto back = ChangeFromJson(ChangeToJson(change));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->key, change.key);
  EXPECT_EQ(back->required_by, change.required_by);
  EXPECT_EQ(back->source_hash, change.source_hash);
  EXPECT_EQ(back->target_hash, change.target_hash);
  ASSERT_EQ(back->fields.size(), 3u);
  EXPECT_EQ(back->fields[0].source, change.fields[0].source);
  EXPECT_EQ(back->fields[1].source, change.fields[1].source);
  EXPECT_EQ(back->fields[1].base_known, false);
  EXPECT_TRUE(back->fields[2].json);
}

// Every part of a change, compared as the text ChangeToJson gives (it writes all of them).
void ExpectSameChange(const Change& got, const Change& want, const std::string& why) {
  EXPECT_EQ(ChangeToJson(got), ChangeToJson(want)) << why;
  ASSERT_EQ(got.fields.size(), want.fields.size()) << why;
  for (size_t i = 0; i < got.fields.size(); ++i) {
    EXPECT_EQ(got.fields[i].base_known, want.fields[i].base_known) << why << " field " << i;
    // An unknown base is not stored.
    if (want.fields[i].base_known) {
      EXPECT_EQ(got.fields[i].Base(), want.fields[i].Base()) << why << " field " << i;
    }
  }
}

// Replaces each `from` in `text` with its `to` (what the writer never writes) and expects both
// paths to refuse the result, the events themselves (not only the object path they fall back
// to), with a message naming `key`.
void ExpectForgedRefused(const std::string& text,
                         const std::vector<std::pair<std::string, std::string>>& forged,
                         const std::string& key) {
  for (const auto& [from, to] : forged) {
    std::string bad = text;
    const size_t at = bad.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    bad.replace(at, from.size(), to);
    EXPECT_FALSE(ChangeFromJsonEventsForTest(bad).has_value()) << bad;
    auto read = ChangeFromJson(bad);
    auto objects = ChangeFromJsonForTest(bad);
    ASSERT_FALSE(read.ok()) << bad;
    ASSERT_FALSE(objects.ok()) << bad;
    EXPECT_NE(read.status().message().find(key), std::string::npos) << read.status().message();
    EXPECT_NE(objects.status().message().find(key), std::string::npos)
        << objects.status().message();
  }
}

// Many changes read at once, split over threads: each is what ChangeFromJson reads, in order.
// A text that does not read fails the whole batch with the first such text's error, and what
// was already read stays as it was.
TEST(ChangeJsonTest, ManyChangesReadInOrderOverThreadsAndTheFirstErrorIsTold) {
  std::vector<std::string> texts;
  std::vector<Change> want;
  for (int i = 0; i < 5000; ++i) {
    Change c = Sample("page " + std::to_string(i));
    c.source_id = int64_t{i};
    c.fields.resize(static_cast<size_t>(i % 3) + 1);
    texts.push_back(i % 2 == 0 ? ChangeToJson(c) : ChangeToStoredJson(c));
    want.push_back(std::move(c));
  }
  for (const unsigned threads : {1u, 2u, 4u}) {
    SCOPED_TRACE(threads);
    std::vector<Change> got(1);  // appended after what is there
    ASSERT_TRUE(ChangesFromJson(texts, &got, threads).ok());
    ASSERT_EQ(got.size(), texts.size() + 1);
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_NO_FATAL_FAILURE(ExpectSameChange(got[i + 1], want[i], std::to_string(i)));
    }
  }
  // Two bad texts, each in its own thread's part: the earlier one is told.
  std::vector<std::string> bad = texts;
  bad[4000] = "{\"tab\":\"modified\"";
  bad[1500] = "{\"tab\":\"nowhere\"}";
  std::vector<Change> kept(2);
  const Status status = ChangesFromJson(bad, &kept, 2);
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(status.message(), ChangeFromJson(bad[1500]).status().message());
  EXPECT_NE(status.message(), ChangeFromJson(bad[4000]).status().message());
  EXPECT_EQ(kept.size(), 2u);
  std::vector<Change> none;
  EXPECT_TRUE(ChangesFromJson({}, &none).ok());
  EXPECT_TRUE(none.empty());
}

// The state store's form names the side a long base repeats instead of writing it again, and
// reads back the very change, by the events and by the object path alike.
TEST(ChangeJsonTest, StoredFormNamesTheSideALongBaseRepeatsAndReadsBackTheSameChange) {
  const std::string long_text(200, 'x');
  Change modified = Sample("short");
  modified.tab = Tab::kModified;
  modified.fields[0].source = long_text + " edited on TEST";
  modified.fields[0].target = long_text;
  modified.fields[0].base = long_text;  // only the source changed since the base
  Change deleted = Sample("short");
  deleted.tab = Tab::kDeleted;
  deleted.fields[0].source = Value();
  deleted.fields[0].target = long_text;
  deleted.fields[0].base = long_text;
  Change reverted = Sample("short");
  reverted.fields[0].source = long_text;  // the target changed, the source is the base
  reverted.fields[0].target = long_text + " edited on PROD";
  reverted.fields[0].base = long_text;
  // Without the JSON field, which the events leave to the object path (tested below).
  for (Change* change : {&modified, &deleted, &reverted}) change->fields.pop_back();

  const std::string modified_text = ChangeToStoredJson(modified);
  EXPECT_NE(modified_text.find("\"base\":null,\"base_known\":true,\"json\":false,"
                               "\"base_as\":\"target\""),
            std::string::npos)
      << modified_text;
  EXPECT_LT(modified_text.size() + long_text.size() / 2, ChangeToJson(modified).size());
  EXPECT_NE(ChangeToStoredJson(reverted).find("\"base_as\":\"source\""), std::string::npos);
  EXPECT_EQ(ChangeToJson(modified).find("base_as"), std::string::npos);
  // A short base, an unknown one, a NULL one and one equal to neither side are written out.
  Change neither = Sample("short");
  neither.fields[0].source = long_text + " on TEST";
  neither.fields[0].target = long_text + " on PROD";
  neither.fields[0].base = long_text;
  Change unknown = modified;
  unknown.fields[0].base_known = false;
  unknown.fields[0].base = Value();
  for (const Change& change : {Sample("short"), neither, unknown}) {
    const std::string text = ChangeToStoredJson(change);
    EXPECT_EQ(text.find("base_as"), std::string::npos) << text;
    auto back = ChangeFromJson(text);
    ASSERT_TRUE(back.ok()) << back.status().message();
    ExpectSameChange(*back, change, text);
  }
  EXPECT_EQ(ChangeToStoredJson(Sample("short")), ChangeToJson(Sample("short")));
  EXPECT_NE(ChangeToStoredJson(neither).find("\"base\":\"" + long_text + "\""), std::string::npos);
  EXPECT_NE(ChangeToStoredJson(Sample(long_text)).find("\"base_as\":\"source\""),
            std::string::npos);

  for (const Change& change : {modified, deleted, reverted}) {
    const std::string text = ChangeToStoredJson(change);
    auto events = ChangeFromJsonEventsForTest(text);
    ASSERT_TRUE(events.has_value()) << "the events read the stored form alone: " << text;
    ExpectSameChange(*events, change, text);
    auto objects = ChangeFromJsonForTest(text);
    ASSERT_TRUE(objects.ok()) << objects.status().message();
    ExpectSameChange(*objects, change, text);
    auto back = ChangeFromJson(text);
    ASSERT_TRUE(back.ok()) << back.status().message();
    ExpectSameChange(*back, change, text);
  }

  // A base held as a mark of the side it repeats (as a comparison makes it) is written as the
  // same text as one held itself, and a base_as reads back as that mark, not a second copy.
  for (const Change& change : {modified, deleted, reverted}) {
    Change marked = change;
    marked.fields[0].base_is =
        change.tab == Tab::kConflicts ? FieldDiff::BaseIs::kSource : FieldDiff::BaseIs::kTarget;
    marked.fields[0].base = Value();
    ASSERT_TRUE(CompareValues(marked.fields[0].Base(), change.fields[0].base) == 0);
    EXPECT_EQ(ChangeToStoredJson(marked), ChangeToStoredJson(change));
    EXPECT_EQ(ChangeToJson(marked), ChangeToJson(change));
    for (auto back : {ChangeFromJson(ChangeToStoredJson(change)),
                      ChangeFromJsonForTest(ChangeToStoredJson(change))}) {
      ASSERT_TRUE(back.ok()) << back.status().message();
      EXPECT_EQ(back->fields[0].base_is, marked.fields[0].base_is);
      EXPECT_TRUE(IsNull(back->fields[0].base));
    }
  }

  // A JSON field whose base repeats its target reads back as the object path reads the long
  // form (its JSON value as nlohmann writes it).
  Change children = Sample("short");
  children.fields[2].source = std::string(R"([{"position":1,"caption":")") + long_text + "\"}]";
  children.fields[2].target = children.fields[2].source;
  children.fields[2].base = children.fields[2].source;
  children.fields[2].base_known = true;
  auto stored = ChangeFromJson(ChangeToStoredJson(children));
  auto written_out = ChangeFromJson(ChangeToJson(children));
  ASSERT_TRUE(stored.ok() && written_out.ok());
  ExpectSameChange(*stored, *written_out, "JSON field");

  // What the writer never writes is refused by both paths with the same message.
  const std::vector<std::pair<std::string, std::string>> forged = {
      {"\"base_as\":\"target\"", "\"base_as\":\"base\""},
      {"\"base_as\":\"target\"", "\"base_as\":1"},
      {"\"base_as\":\"target\"", "\"base_as\":null"},
      {"\"base\":null,\"base_known\":true", "\"base\":\"x\",\"base_known\":true"},
      {"\"base\":null,\"base_known\":true", "\"base\":null,\"base_known\":false"},
  };
  ExpectForgedRefused(modified_text, forged, "base_as");
}

// The state store's form writes a long target that is mostly its source as the edit that makes
// it ("head,tail,middle": the bytes kept from the source's head and tail, and the text between),
// cut at whole UTF-8 characters, and reads back the very bytes by both paths.
TEST(ChangeJsonTest, StoredFormWritesAMostlyUnchangedTargetAsAnEditOfItsSource) {
  const std::string head(100, 'h');
  const std::string tail(50, 't');
  auto with_title = [](Value source, Value target) {
    Change c = Sample("short");
    c.tab = Tab::kModified;
    c.fields.resize(1);
    c.fields[0].source = std::move(source);
    c.fields[0].target = std::move(target);
    c.fields[0].base_known = false;
    c.fields[0].base = Value();
    return c;
  };
  auto expect_reads_back = [](const Change& change, const std::string& text) {
    for (auto read : {ChangeFromJsonEventsForTest(text), std::optional<Change>()}) {
      if (!read) {
        auto objects = ChangeFromJsonForTest(text);
        ASSERT_TRUE(objects.ok()) << objects.status().message();
        read = std::move(*objects);
      }
      ExpectSameChange(*read, change, text);
      EXPECT_EQ(read->fields[0].target, change.fields[0].target) << text;
      EXPECT_EQ(read->fields[0].source, change.fields[0].source) << text;
    }
  };

  // Text replaced in the middle: the head and the tail are kept from the source.
  const Change middle = with_title(head + "A" + tail, head + "BB \" \\ " + tail);
  const std::string text = ChangeToStoredJson(middle);
  EXPECT_NE(text.find(R"("target":null,)"), std::string::npos) << text;
  EXPECT_NE(text.find(R"("target_edit":"100,50,BB \" \\ ")"), std::string::npos) << text;
  EXPECT_EQ(ChangeToJson(middle).find("target_edit"), std::string::npos);
  EXPECT_LT(text.size() + head.size(), ChangeToJson(middle).size());
  expect_reads_back(middle, text);

  // Appended, cut, emptied into the other side, and an edit between two multi-byte characters
  // that share their first byte: the middle starts at the character, not inside it.
  const std::vector<Change> edited = {
      with_title(head + tail, head + tail + " appended"),
      with_title(head + tail + " cut", head + tail),
      with_title(head + "caf\xc3\xa9" + tail, head + "caf\xc3\xa8" + tail),
      with_title(head + "\xe2\x82\xac" + tail, head + "\xe2\x82\xa4" + tail),
  };
  for (const Change& change : edited) {
    const std::string stored = ChangeToStoredJson(change);
    EXPECT_NE(stored.find("target_edit"), std::string::npos) << stored;
    expect_reads_back(change, stored);
  }
  EXPECT_NE(ChangeToStoredJson(edited[2]).find("\"target_edit\":\"103,50,\xc3\xa8\""),
            std::string::npos)
      << ChangeToStoredJson(edited[2]);

  // Written out whole: short texts, a new or deleted record's side, a JSON field, a side that is
  // not UTF-8 (the writer replaces its bad bytes), a real, and sides with too little in common.
  Change json_field = with_title(head + "1" + tail, head + "2" + tail);
  json_field.fields[0].json = true;
  const std::vector<Change> whole = {
      with_title(std::string("short A"), std::string("short B")),
      with_title(Value(), head + tail),
      with_title(head + tail, Value()),
      json_field,
      with_title(head + "A" + tail, head + "\xff" + tail),
      with_title(head + "\xff" + tail, head + "A" + tail),
      with_title(1.5, head),
      with_title(std::string(60, 'x') + "A", std::string(60, 'x') + "B"),
  };
  for (const Change& change : whole) {
    EXPECT_EQ(ChangeToStoredJson(change).find("target_edit"), std::string::npos)
        << ChangeToStoredJson(change);
  }

  // What the writer never writes is refused by both paths with the same message.
  const std::vector<std::pair<std::string, std::string>> forged = {
      {R"("target_edit":"100,50,)", R"("target_edit":"100,52,)"},
      {R"("target_edit":"100,50,)", R"("target_edit":"100,)"},
      {R"("target_edit":"100,50,)", R"("target_edit":"-1,50,)"},
      {R"("target_edit":"100,50,)", R"("target_edit":",50,)"},
      {R"("target_edit":"100,50,BB \" \\ ")", R"("target_edit":7)"},
      {R"("target":null,)", R"("target":"x",)"},
      {R"("json":false)", R"("json":true)"},
  };
  ExpectForgedRefused(text, forged, "target_edit");
}

// ChangeFromJson reads SAX events straight into the change and leaves what it does not cover
// to the object path: on every text the two give the same change, or the same error.
TEST(ChangeJsonTest, EventsReadWhatTheObjectPathReads) {
  auto same = [](const std::string& text) {
    auto events = ChangeFromJson(text);
    auto objects = ChangeFromJsonForTest(text);
    ASSERT_EQ(events.ok(), objects.ok()) << text;
    if (!events.ok()) {
      EXPECT_EQ(events.status().message(), objects.status().message()) << text;
      return;
    }
    // Everything a change holds is in its text.
    EXPECT_EQ(ChangeToJson(*events), ChangeToJson(*objects)) << text;
    EXPECT_EQ(events->fields.size(), objects->fields.size()) << text;
  };
  std::mt19937 random(20261202);
  std::vector<std::string> texts;
  int by_events = 0;
  for (int i = 0; i < 500; ++i) {
    std::string text(static_cast<size_t>(random() % 30), '\0');
    for (char& ch : text) ch = static_cast<char>(random() % 256);
    Change change = Sample(text);
    // Every kind of ID, tab, conflict, hash and field value.
    const Value ids[] = {Value(), int64_t{-3}, 2.5, std::string("home.banner")};
    change.source_id = ids[random() % 4];
    change.target_id = ids[random() % 4];
    change.tab = static_cast<Tab>(random() % 4);
    change.conflict = random() % 2 ? Conflict::kNone : Conflict::kBothModified;
    change.reason = random() % 2 ? Reason::kNone : Reason::kTargetChanged;
    change.source_hash = random() % 2 ? std::optional<uint64_t>() : random();
    change.required_by.resize(random() % 3);
    // Without the JSON field (the last), which the events leave to the object path.
    if (random() % 4 == 0) change.fields.clear();
    if (random() % 4 != 0 && !change.fields.empty()) change.fields.pop_back();
    texts.push_back(ChangeToJson(change));
    // What the writer writes, with no JSON field value, is read by the events alone.
    const bool structured = std::any_of(change.fields.begin(), change.fields.end(),
                                        [](const FieldDiff& f) { return f.json; });
    if (!structured) {
      auto events = ChangeFromJsonEventsForTest(texts.back());
      ASSERT_TRUE(events.has_value()) << texts.back();
      EXPECT_EQ(ChangeToJson(*events), texts.back());
      ++by_events;
    }
  }
  EXPECT_GT(by_events, 250);
  // Texts the writer never writes: other types, missing, duplicated and unknown keys, JSON
  // field values of every kind, malformed JSON.
  const std::string base = ChangeToJson(Sample("plain"));
  const std::vector<std::pair<std::string, std::string>> edits = {
      {"\"tab\":\"", "\"tab\":\"x"},
      {"\"selected\":true", "\"selected\":1"},
      {"\"selected\":true", "\"selected\":true,\"selected\":false"},
      {"\"mergeable\":true", "\"mergeable\":null"},
      {"\"conflict\":", "\"conflict\":7,\"c2\":"},
      {"\"required_by\":[", "\"required_by\":[1,"},
      {"\"required_by\":[", "\"extra\":{\"a\":[1]},\"required_by\":["},
      {"\"source_hash\":\"", "\"source_hash\":\"0x"},
      {"\"source_hash\":\"", "\"source_hash\":\"zz"},
      {"\"key\":", "\"key\":null,\"k\":"},
      {"\"fields\":[",
       "\"fields\":[{\"field\":\"f\",\"source\":true,\"target\":1e3,"
       "\"base\":18446744073709551615,\"json\":false},"},
      {"\"fields\":[",
       "\"fields\":[{\"field\":\"f\",\"source\":{\"b\":1,\"a\":[2.50]},"
       "\"target\":7,\"base\":null,\"json\":true},"},
      {"\"fields\":[",
       "\"fields\":[{\"field\":\"f\",\"source\":1,\"target\":2,\"base\":3,"
       "\"json\":null},"},
      {"\"fields\":[", "\"fields\":[{\"field\":\"f\",\"source\":1,\"target\":2},"},
      {"\"fields\":[",
       "\"fields\":[{\"field\":\"f\",\"source\":1,\"source\":2,"
       "\"target\":2,\"base\":3,\"x\":4},"},
      {"\"fields\":[", "\"fields\":{\"a\":1},\"f2\":["},
      {"{\"tab\"", "[{\"tab\""},
      {"\"module\":", "\"module\":[],\"m\":"},
  };
  for (const auto& [from, to] : edits) {
    const size_t at = base.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    std::string text = base;
    text.replace(at, from.size(), to);
    texts.push_back(text);
  }
  for (size_t cut = 0; cut < base.size(); cut += 7) texts.push_back(base.substr(0, cut));
  texts.push_back(base + " trailing");
  texts.push_back("42");
  for (const std::string& text : texts) same(text);
}

}  // namespace
}  // namespace envsync::store
