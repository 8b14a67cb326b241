#include "pgbackfill/util/strings.h"

#include <gtest/gtest.h>

#include <string_view>

namespace pgbackfill {
namespace {

// Names of objects left in users' databases (trigger functions, NOT NULL helper constraints)
// carry Fnv1a32 hashes, and a later version must find what an earlier one created: the values are
// pinned, not just compared with themselves. These are FNV-1a's published 32-bit test vectors.
TEST(Fnv1a32Test, IsTheStandardFnv1aSoNamesNeverChangeBetweenVersions) {
  EXPECT_EQ(Fnv1a32(""), 0x811c9dc5u);
  EXPECT_EQ(Fnv1a32("a"), 0xe40c292cu);
  EXPECT_EQ(Fnv1a32("foobar"), 0xbf9cf968u);
  // Bytes, not chars: a byte above 0x7f hashes as unsigned ("ä" in UTF-8).
  EXPECT_EQ(Fnv1a32("\xC3\xA4"), 0x199de0e2u);
  // An embedded NUL counts (NotNullConstraintName hashes job and column apart with one).
  EXPECT_EQ(Fnv1a32(std::string_view("job\0v", 5)), 0xf08e2a86u);
}

}  // namespace
}  // namespace pgbackfill
