#include "envsync/core/record.h"

#include <gtest/gtest.h>

#include <compare>
#include <cstdint>
#include <string>
#include <vector>

#include "envsync/core/embedded_data.h"
#include "envsync/core/identity_map.h"
#include "envsync/core/manifest.h"
#include "envsync/core/value.h"

namespace envsync {
namespace {

// The shipped manifest, parsed once; layouts point into it.
const Manifest& Shipped() {
  static const Manifest manifest = [] {
    Result<Manifest> parsed = Manifest::Parse(EmbeddedManifest(), kEmbeddedManifestName);
    EXPECT_TRUE(parsed.ok()) << parsed.status().message();
    return parsed.ok() ? std::move(parsed).value() : Manifest();
  }();
  return manifest;
}

const std::vector<std::string> kPageColumns = {"id",        "slug",   "title",         "body_html",
                                               "layout",    "status", "hero_image_id", "updated_by",
                                               "updated_at"};
const std::vector<std::string> kSliderColumns = {"id",        "code",        "name",
                                                 "placement", "autoplay_ms", "active"};
const std::vector<std::string> kSlideColumns = {"id",       "slider_id", "position",
                                                "image_id", "link_url",  "caption"};

RecordLayout PageLayout() {
  const TableSpec* spec = Shipped().FindTable("cms_pages");
  EXPECT_NE(spec, nullptr);
  return RecordLayout::Make(*spec, kPageColumns, {});
}

RecordLayout SliderLayout() {
  const TableSpec* spec = Shipped().FindTable("sliders");
  EXPECT_NE(spec, nullptr);
  return RecordLayout::Make(*spec, kSliderColumns, {kSlideColumns});
}

// A summer-sale page on `side` with `hero` as its hero image; columns in layout order.
Record Page(const RecordLayout& layout, const IdentityMap& identities, Side side, int64_t id,
            Value hero) {
  std::vector<Value> root = {std::string("summer-sale"), std::string("Summer sale"),
                             std::string("<p>Sale</p>"), std::string("default"),
                             std::string("published"),   std::move(hero)};
  Record record;
  BuildRecord(layout, identities, side, Value(id), std::move(root), {}, "", {"summer-sale"},
              &record);
  return record;
}

// A slide row in ChildLayout order: position, image_id, link_url, caption.
ChildRow Slide(int64_t position, int64_t image_id, const std::string& caption) {
  return {Value(position), Value(image_id), Value(), Value(caption)};
}

// The home-top slider on `side` with `slides`.
Record Slider(const RecordLayout& layout, const IdentityMap& identities, Side side, int64_t id,
              std::vector<ChildRow> slides) {
  std::vector<Value> root = {std::string("home-top"), std::string("Home"), std::string("top"),
                             Value(int64_t{5000}), Value(int64_t{1})};
  Record record;
  BuildRecord(layout, identities, side, Value(id), std::move(root), {std::move(slides)}, "",
              {"home-top"}, &record);
  return record;
}

size_t FieldIndex(const RecordLayout& layout, const std::string& name) {
  for (size_t i = 0; i < layout.fields.size(); ++i) {
    if (layout.fields[i].name == name) return i;
  }
  ADD_FAILURE() << "no field " << name;
  return 0;
}

// The integer 1, the text '1' and NULL hash differently.
TEST(HashValue, DistinguishesIntegerTextAndNull) {
  const uint64_t integer = HashValue(Value(int64_t{1}));
  const uint64_t text = HashValue(Value(std::string("1")));
  const uint64_t null = HashValue(Value());
  EXPECT_NE(integer, text);
  EXPECT_NE(integer, null);
  EXPECT_NE(text, null);
}

// Equal values hash equally.
TEST(HashValue, IsDeterministic) {
  EXPECT_EQ(HashValue(Value(int64_t{42})), HashValue(Value(int64_t{42})));
  EXPECT_EQ(HashValue(Value(std::string("x"))), HashValue(Value(std::string("x"))));
}

// The ID and the local columns (updated_by, updated_at) are not among the compared fields.
TEST(RecordLayout, LeavesIdAndLocalColumnsOut) {
  const RecordLayout layout = PageLayout();
  EXPECT_EQ(layout.columns, (std::vector<std::string>{"slug", "title", "body_html", "layout",
                                                      "status", "hero_image_id"}));
  EXPECT_EQ(layout.fields.size(), 6u);
  EXPECT_EQ(layout.ColumnIndex("id"), -1);
  EXPECT_EQ(layout.ColumnIndex("updated_by"), -1);
  EXPECT_EQ(layout.ColumnIndex("updated_at"), -1);
  EXPECT_EQ(layout.key_columns, (std::vector<int>{0}));
}

// hero_image_id is compared as a reference to gallery_files.
TEST(RecordLayout, MarksReferenceColumns) {
  const RecordLayout layout = PageLayout();
  EXPECT_EQ(layout.fields[FieldIndex(layout, "hero_image_id")].referenced_table, "gallery_files");
  EXPECT_EQ(layout.fields[FieldIndex(layout, "title")].referenced_table, "");
}

// Pages differing only in their IDs hash equally: the ID is not content.
TEST(BuildRecord, IdIsNotCompared) {
  const RecordLayout layout = PageLayout();
  const IdentityMap identities;
  const Record test = Page(layout, identities, Side::kTest, 8, Value(int64_t{55}));
  const Record prod = Page(layout, identities, Side::kProd, 9, Value(int64_t{55}));
  EXPECT_EQ(test.hash, prod.hash);
  EXPECT_EQ(test.key, "summer-sale");
}

// Hero 55 on TEST and 63 on PROD compare equal once the pair is known.
TEST(BuildRecord, ReferenceComparedThroughIdentityMap) {
  const RecordLayout layout = PageLayout();
  IdentityMap identities;
  identities.Add("gallery_files", /*prod_id=*/63, /*test_id=*/55);
  const Record test = Page(layout, identities, Side::kTest, 8, Value(int64_t{55}));
  const Record prod = Page(layout, identities, Side::kProd, 8, Value(int64_t{63}));
  const size_t hero = FieldIndex(layout, "hero_image_id");
  EXPECT_EQ(test.field_hashes[hero], prod.field_hashes[hero]);
  EXPECT_EQ(test.hash, prod.hash);
  // Users still see each side's raw ID.
  EXPECT_EQ(test.values[hero], Value(int64_t{55}));
  EXPECT_EQ(prod.values[hero], Value(int64_t{63}));
}

// Without the pair, hero 55 on TEST and 63 on PROD differ.
TEST(BuildRecord, ReferenceDiffersWithoutPair) {
  const RecordLayout layout = PageLayout();
  const IdentityMap identities;
  const Record test = Page(layout, identities, Side::kTest, 8, Value(int64_t{55}));
  const Record prod = Page(layout, identities, Side::kProd, 8, Value(int64_t{63}));
  const size_t hero = FieldIndex(layout, "hero_image_id");
  EXPECT_NE(test.field_hashes[hero], prod.field_hashes[hero]);
  EXPECT_NE(test.hash, prod.hash);
}

// A record lists what it references, by raw ID of its side; a NULL reference is no reference.
TEST(BuildRecord, CollectsReferences) {
  const RecordLayout layout = PageLayout();
  const IdentityMap identities;
  const Record with_hero = Page(layout, identities, Side::kTest, 8, Value(int64_t{55}));
  ASSERT_EQ(with_hero.references.size(), 1u);
  EXPECT_EQ(*with_hero.references[0].first, "gallery_files");
  EXPECT_EQ(with_hero.references[0].second, Value(int64_t{55}));
  const Record without_hero = Page(layout, identities, Side::kTest, 8, Value());
  EXPECT_TRUE(without_hero.references.empty());
}

// Slides' own ID and parent column are not compared; they form one `slides` field.
TEST(RecordLayout, ChildColumnsLeaveIdAndParentOut) {
  const RecordLayout layout = SliderLayout();
  ASSERT_EQ(layout.children.size(), 1u);
  EXPECT_EQ(layout.children[0].columns,
            (std::vector<std::string>{"position", "image_id", "link_url", "caption"}));
  EXPECT_EQ(layout.children[0].references, (std::vector<std::string>{"", "gallery_files", "", ""}));
  const FieldLayout& slides = layout.fields[FieldIndex(layout, "slides")];
  EXPECT_EQ(slides.kind, FieldLayout::Kind::kChildren);
  EXPECT_EQ(slides.child, 0);
}

// Sliders whose slides have equal content in equal order hash equally, whatever their IDs.
TEST(BuildRecord, ChildRowsWithSameContentAreEqual) {
  const RecordLayout layout = SliderLayout();
  const IdentityMap identities;
  const Record test =
      Slider(layout, identities, Side::kTest, 3, {Slide(1, 55, "Sun"), Slide(2, 56, "Sea")});
  const Record prod =
      Slider(layout, identities, Side::kProd, 7, {Slide(1, 55, "Sun"), Slide(2, 56, "Sea")});
  EXPECT_EQ(test.field_hashes[FieldIndex(layout, "slides")],
            prod.field_hashes[FieldIndex(layout, "slides")]);
  EXPECT_EQ(test.hash, prod.hash);
}

// The same slides in another order make a different record.
TEST(BuildRecord, ChildRowOrderIsCompared) {
  const RecordLayout layout = SliderLayout();
  const IdentityMap identities;
  const Record a =
      Slider(layout, identities, Side::kTest, 3, {Slide(1, 55, "Sun"), Slide(2, 56, "Sea")});
  const Record b =
      Slider(layout, identities, Side::kProd, 3, {Slide(2, 56, "Sea"), Slide(1, 55, "Sun")});
  EXPECT_NE(a.field_hashes[FieldIndex(layout, "slides")],
            b.field_hashes[FieldIndex(layout, "slides")]);
}

// A changed slide caption makes a different record.
TEST(BuildRecord, ChildRowContentIsCompared) {
  const RecordLayout layout = SliderLayout();
  const IdentityMap identities;
  const Record a = Slider(layout, identities, Side::kTest, 3, {Slide(1, 55, "Sun")});
  const Record b = Slider(layout, identities, Side::kProd, 3, {Slide(1, 55, "Sunset")});
  EXPECT_NE(a.hash, b.hash);
}

// A slide's image reference is compared through the identity map.
TEST(BuildRecord, ChildReferenceComparedThroughIdentityMap) {
  const RecordLayout layout = SliderLayout();
  IdentityMap identities;
  identities.Add("gallery_files", /*prod_id=*/63, /*test_id=*/55);
  const Record test = Slider(layout, identities, Side::kTest, 3, {Slide(1, 55, "Sun")});
  const Record prod = Slider(layout, identities, Side::kProd, 3, {Slide(1, 63, "Sun")});
  EXPECT_EQ(test.hash, prod.hash);
  ASSERT_EQ(test.references.size(), 1u);
  EXPECT_EQ(*test.references[0].first, "gallery_files");
}

// The slides field shows the rows as JSON text, without their IDs.
TEST(BuildRecord, ChildRowsShownAsJson) {
  const RecordLayout layout = SliderLayout();
  const IdentityMap identities;
  const Record record = Slider(layout, identities, Side::kTest, 3, {Slide(1, 55, "Sun \"1\"")});
  EXPECT_EQ(record.values[FieldIndex(layout, "slides")],
            Value(std::string(
                R"([{"position":1,"image_id":55,"link_url":null,"caption":"Sun \"1\""}])")));
}

// gallery: names are extracted in order of appearance as <folder>/<file>.
TEST(GalleryReferences, ExtractsNamesInOrder) {
  EXPECT_EQ(GalleryReferences(
                R"({"banner":"gallery:mobile_app/splash.png","icon":"gallery:mobile_app/icon.png",)"
                R"("title":"Welcome"})"),
            (std::vector<std::string>{"mobile_app/splash.png", "mobile_app/icon.png"}));
}

// An escaped slash (as PHP's json_encode writes it) is unescaped.
TEST(GalleryReferences, UnescapesEscapedSlash) {
  EXPECT_EQ(GalleryReferences(R"({"banner":"gallery:mobile_app\/splash.png"})"),
            (std::vector<std::string>{"mobile_app/splash.png"}));
}

// A \u escape inside the name is decoded to UTF-8.
TEST(GalleryReferences, DecodesUnicodeEscape) {
  EXPECT_EQ(GalleryReferences(R"({"banner":"gallery:mobile_app\/caf\u00e9.png"})"),
            (std::vector<std::string>{"mobile_app/caf\xc3\xa9.png"}));
}

// A name inside a JSON-encoded string (escaped quotes) ends at its escaped closing quote.
TEST(GalleryReferences, StopsAtEscapedQuoteOfNestedJson) {
  EXPECT_EQ(GalleryReferences(R"({"nested":"{\"logo\":\"gallery:mobile_app/logo.png\"}"})"),
            (std::vector<std::string>{"mobile_app/logo.png"}));
}

// Strings that are not gallery: names are ignored, also ones that merely mention the word.
TEST(GalleryReferences, IgnoresOtherStrings) {
  EXPECT_TRUE(GalleryReferences(R"({"primary":"#c0392b","title":"Welcome",)"
                                R"("url":"https://gallery.example.com/a.png",)"
                                R"("note":"see gallery:mobile_app/splash.png","gallery":"x/y"})")
                  .empty());
}

// NULL sorts before every number.
TEST(CompareValues, NullBeforeNumbers) {
  EXPECT_EQ(CompareValues(Value(), Value(int64_t{-5})), std::strong_ordering::less);
  EXPECT_EQ(CompareValues(Value(), Value(-1.5)), std::strong_ordering::less);
  EXPECT_EQ(CompareValues(Value(), Value()), std::strong_ordering::equal);
}

// Every number sorts before every text, also text that looks like a smaller number.
TEST(CompareValues, NumbersBeforeText) {
  EXPECT_EQ(CompareValues(Value(int64_t{100}), Value(std::string("1"))),
            std::strong_ordering::less);
  EXPECT_EQ(CompareValues(Value(std::string("")), Value(2.5)), std::strong_ordering::greater);
  EXPECT_EQ(CompareValues(Value(), Value(std::string(""))), std::strong_ordering::less);
}

// Numbers compare by value, integers and reals alike.
TEST(CompareValues, NumbersByValue) {
  EXPECT_EQ(CompareValues(Value(int64_t{9}), Value(int64_t{10})), std::strong_ordering::less);
  EXPECT_EQ(CompareValues(Value(2.5), Value(int64_t{3})), std::strong_ordering::less);
  EXPECT_EQ(CompareValues(Value(int64_t{3}), Value(3.0)), std::strong_ordering::equal);
}

// Text compares by bytes (BINARY collation): upper case before lower case, "10" before "9".
TEST(CompareValues, TextByBytes) {
  EXPECT_EQ(CompareValues(Value(std::string("B")), Value(std::string("a"))),
            std::strong_ordering::less);
  EXPECT_EQ(CompareValues(Value(std::string("10")), Value(std::string("9"))),
            std::strong_ordering::less);
}

}  // namespace
}  // namespace envsync
