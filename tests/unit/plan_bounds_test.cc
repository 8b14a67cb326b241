// The bounds on a plan file: any input, however large, deep, self-referencing or binary, is
// refused quickly with a `file:line:` message instead of being parsed at length. These tests
// prove the messages; that the large inputs are refused at all is what proves the speed (the
// unbounded parser took minutes on some of them), and no test times anything.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "pgbackfill/plan/parse.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::plan {
namespace {

using ::testing::HasSubstr;

constexpr size_t kMebibyte = size_t{1} << 20;
constexpr char kHead[] = "version: 1\nname: j\ntable: t\n";

absl::StatusOr<Plan> Parse(std::string_view text) {
  return ParsePlan(text, "plan.yaml", [](std::string_view) { return std::nullopt; });
}

std::string ErrorOf(std::string_view text) {
  absl::StatusOr<Plan> plan = Parse(text);
  EXPECT_FALSE(plan.ok()) << "parsed unexpectedly";
  if (plan.ok()) return "";
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(plan.status().message());
}

// `count` lines `  cN: 1`: the entries of a `set` or `columns` mapping.
std::string Columns(size_t count) {
  std::string out;
  for (size_t i = 1; i <= count; ++i) absl::StrAppend(&out, "  c", i, ": 1\n");
  return out;
}

// A valid plan followed by a comment that makes it exactly `size` bytes.
std::string PlanOfSize(size_t size) {
  std::string text = absl::StrCat(kHead, "set: {a: '1'}\n#");
  text.append(size - text.size() - 1, 'x');
  text += '\n';
  return text;
}

TEST(PlanBoundsTest, AFileOfOneMebibyteIsReadAndOneByteMoreIsRefusedAtLineOne) {
  EXPECT_TRUE(Parse(PlanOfSize(kMebibyte)).ok());
  EXPECT_EQ(ErrorOf(PlanOfSize(kMebibyte + 1)),
            "plan.yaml:1: the file is larger than the 1 MiB (1048576 bytes) a plan file may be");
}

TEST(PlanBoundsTest, LoadingAHugeFileStopsAtTheBound) {
  const std::string path = ::testing::TempDir() + "/pgbackfill_plan_bounds_test.yaml";
  {
    std::ofstream out(path, std::ios::binary);
    out << PlanOfSize(8 * kMebibyte);
  }
  absl::StatusOr<Plan> plan = LoadPlanFile(path, [](std::string_view) { return std::nullopt; });
  std::remove(path.c_str());
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().message(),
            path + ":1: the file is larger than the 1 MiB (1048576 bytes) a plan file may be");
}

TEST(PlanBoundsTest, BinaryInputIsRefusedAtTheLineOfItsFirstNonTextByte) {
  std::string nul = absl::StrCat(kHead, "set: {a: '1'}");
  nul.push_back('\0');
  nul += "\n";
  EXPECT_EQ(ErrorOf(nul),
            "plan.yaml:4: the file is not UTF-8 text (byte 0x00); a plan file is YAML text");
  EXPECT_EQ(ErrorOf("\x7f"
                    "ELF\x02\x01\x01"),
            "plan.yaml:1: the file is not UTF-8 text (byte 0x7f); a plan file is YAML text");
  EXPECT_EQ(ErrorOf("version: 1\nname: \xff\xfe\n"),
            "plan.yaml:2: the file is not UTF-8 text (byte 0xff); a plan file is YAML text");
  // An overlong encoding of "/" and a lone continuation byte are not UTF-8 either.
  EXPECT_THAT(ErrorOf("version: 1\n\xc0\xaf\n"), HasSubstr("plan.yaml:2: the file is not UTF-8"));
  EXPECT_THAT(ErrorOf("\x80"), HasSubstr("plan.yaml:1: the file is not UTF-8 text (byte 0x80)"));
}

TEST(PlanBoundsTest, Utf8TextTabsAndCrLfLineEndsAreText) {
  EXPECT_TRUE(Parse(absl::StrCat("# café, naïve, ✓\r\n", kHead, "set: {a: '\t1'}\r\n")).ok());
}

// The message for more than 1,600 entries under `key` at line `line`.
std::string TooMany(int line, std::string_view key) {
  return absl::StrCat("plan.yaml:", line, ": ", ToAbsl(key),
                      ": has more than 1600 entries; no mapping or list of a plan holds more (a "
                      "table has at most 1600 columns, PostgreSQL's limit)");
}

// `[c1, c2, ...]` with `count` names.
std::string ColumnNames(size_t count) {
  std::string out = "[c1";
  for (size_t i = 2; i <= count; ++i) absl::StrAppend(&out, ", c", i);
  return out + "]";
}

TEST(PlanBoundsTest, SetTakesAtMost1600Columns) {
  EXPECT_TRUE(Parse(absl::StrCat(kHead, "set:\n", Columns(1600))).ok());
  EXPECT_EQ(ErrorOf(absl::StrCat(kHead, "set:\n", Columns(1601))), TooMany(4, "set"));
}

TEST(PlanBoundsTest, ColumnsAndListsTakeAtMost1600Entries) {
  EXPECT_EQ(ErrorOf(absl::StrCat(kHead, "into: u\ncolumns:\n", Columns(1601))),
            TooMany(5, "columns"));
  EXPECT_TRUE(Parse(absl::StrCat(kHead, "key: ", ColumnNames(1600), "\nset: {a: '1'}\n")).ok());
  EXPECT_EQ(ErrorOf(absl::StrCat(kHead, "key: ", ColumnNames(1601), "\nset: {a: '1'}\n")),
            TooMany(4, "key"));
  std::string steps;
  for (int i = 0; i < 1601; ++i) steps += "  - SELECT 1\n";
  EXPECT_EQ(ErrorOf(absl::StrCat(kHead, "set: {a: '1'}\nexpand:\n", steps)), TooMany(5, "expand"));
}

TEST(PlanBoundsTest, ThreeHundredThousandSetEntriesAreRefusedWithoutBeingParsed) {
  EXPECT_THAT(ErrorOf(absl::StrCat(kHead, "set:\n", Columns(300000))),
              HasSubstr("plan.yaml:1: the file is larger than the 1 MiB"));
}

TEST(PlanBoundsTest, AMebibyteOfSetEntriesIsRefusedByTheirCount) {
  const std::string text = absl::StrCat(kHead, "set:\n", Columns(75000));
  ASSERT_LT(text.size(), kMebibyte);
  EXPECT_EQ(ErrorOf(text), TooMany(4, "set"));
}

TEST(PlanBoundsTest, AMebibyteFlowListIsRefusedByItsCount) {
  std::string list = "[a";
  while (list.size() < kMebibyte - 100) list += ", a";
  EXPECT_EQ(ErrorOf(absl::StrCat(kHead, "set: {a: '1'}\nexpand: ", list, "]\n")),
            TooMany(5, "expand"));
}

TEST(PlanBoundsTest, NestingDeeperThanSixteenIsRefusedWithTheKeyItIsUnder) {
  const std::string message =
      "plan.yaml:4: set.a: nests mappings and lists more than 16 deep; a plan needs 3";
  EXPECT_EQ(
      ErrorOf(absl::StrCat(kHead, "set: {a: ", std::string(20, '['), std::string(20, ']'), "}\n")),
      message);
  // Deeper than yaml-cpp's own recursion guard (2,000): refused at the 17th level all the same.
  EXPECT_EQ(ErrorOf(absl::StrCat(kHead, "set: {a: ", std::string(500000, '['), "\n")), message);
  // Sixteen levels are read (and then refused for what they hold, not for their depth).
  EXPECT_THAT(
      ErrorOf(absl::StrCat(kHead, "set: {a: ", std::string(14, '['), std::string(14, ']'), "}\n")),
      HasSubstr("plan.yaml:4: set.a: must be a SQL expression string"));
}

TEST(PlanBoundsTest, BracketsInStringsAndScalarsAreNotNesting) {
  const std::string brackets(20, '[');
  // Quoted, in a block scalar, and on a plain scalar's continuation line: text, not collections.
  for (const std::string& text :
       {absl::StrCat(kHead, "set: {a: \"'", brackets, "'\"}\n"),
        absl::StrCat(kHead, "set: {a: '1'}\nexpand: |\n  SELECT '", brackets, "'\n  ", brackets,
                     "\n"),
        absl::StrCat(kHead, "set: {a: '1'}\nwhere: x = 1\n  ", brackets, "\n")}) {
    absl::StatusOr<Plan> plan = Parse(text);
    EXPECT_TRUE(plan.ok()) << text << "\n" << plan.status();
  }
}

TEST(PlanBoundsTest, AnAliasIsRefusedWhereItAppears) {
  EXPECT_EQ(ErrorOf(absl::StrCat(kHead, "set:\n  a: &x '1'\n  b: *x\n")),
            "plan.yaml:6: set.b: YAML aliases (*name) are not accepted in a plan file; write the "
            "value out");
}

TEST(PlanBoundsTest, ABillionLaughsFileIsRefusedAtItsFirstAlias) {
  // Ten levels of nine aliases each: 9^10 (3.5 billion) strings for a walk that follows them.
  std::string text =
      absl::StrCat(kHead, "lol0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
  for (int level = 1; level <= 10; ++level) {
    absl::StrAppend(&text, "lol", level, ": &a", level, " [");
    for (int i = 0; i < 9; ++i) absl::StrAppend(&text, i == 0 ? "" : ", ", "*a", level - 1);
    absl::StrAppend(&text, "]\n");
  }
  EXPECT_EQ(ErrorOf(text),
            "plan.yaml:5: lol1: YAML aliases (*name) are not accepted in a plan file; write the "
            "value out");
}

}  // namespace
}  // namespace pgbackfill::plan
