#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "pgbackfill/follow/apply.h"

namespace pgbackfill::follow {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Optional;

// Source items(id bigint, qty int, body text); target items_copy(id, qty, label = upper(body)).
ApplySpec Spec() {
  ApplySpec spec;
  spec.target = {"public", "items_copy"};
  spec.columns = {{"id", "id", 0}, {"qty", "qty::bigint", 0}, {"label", "upper(body)", 0}};
  spec.target_key = {"id"};
  spec.target_key_types = {"bigint"};
  spec.source_key = {"id"};
  spec.source_types = {{"id", "bigint"}, {"qty", "integer"}, {"body", "text"}};
  return spec;
}

Relation Items() {
  Relation relation;
  relation.id = 16384;
  relation.schema = "public";
  relation.name = "items";
  for (const char* name : {"id", "qty", "body"}) {
    RelationColumn column;
    column.name = name;
    column.key = std::string(name) == "id";
    relation.columns.push_back(column);
  }
  return relation;
}

Value Text(std::string text) { return Value{Value::Kind::kText, std::move(text)}; }
Value Unchanged() { return Value{Value::Kind::kUnchanged, ""}; }
Value Null() { return Value{}; }

TEST(FollowApplyTest, AnInsertUpsertsTheTransformedRowOverTheSourceTypes) {
  auto statements =
      ChangeStatements(Spec(), Items(), Insert{16384, {Text("7"), Text("3"), Text("a")}});
  ASSERT_TRUE(statements.ok()) << statements.status();
  ASSERT_EQ(statements->size(), 1u);
  const ChangeStatement& upsert = (*statements)[0];
  EXPECT_EQ(upsert.sql,
            "INSERT INTO \"public\".\"items_copy\" AS d (\"id\", \"qty\", \"label\") SELECT "
            "(id), (qty::bigint), (upper(body)) FROM (SELECT $1::bigint AS \"id\", $2::integer "
            "AS \"qty\", $3::text AS \"body\") AS t ON CONFLICT (\"id\") DO UPDATE SET \"qty\" = "
            "EXCLUDED.\"qty\", \"label\" = EXCLUDED.\"label\"");
  EXPECT_THAT(upsert.params, ElementsAre(Optional(std::string("7")), Optional(std::string("3")),
                                         Optional(std::string("a"))));
  EXPECT_FALSE(upsert.must_hold);
}

TEST(FollowApplyTest, AnUpdateWithEveryValueIsTheSameUpsert) {
  auto update = ChangeStatements(Spec(), Items(),
                                 Update{16384, std::nullopt, {}, {Text("7"), Text("4"), Null()}});
  ASSERT_TRUE(update.ok()) << update.status();
  ASSERT_EQ(update->size(), 1u);
  EXPECT_THAT((*update)[0].sql, HasSubstr("ON CONFLICT (\"id\") DO UPDATE"));
  EXPECT_EQ((*update)[0].params[2], std::nullopt);  // a NULL is a value, and is written
}

TEST(FollowApplyTest, AnUnchangedToastedValueLeavesTheColumnsThatReadItAlone) {
  auto update = ChangeStatements(
      Spec(), Items(), Update{16384, std::nullopt, {}, {Text("7"), Text("5"), Unchanged()}});
  ASSERT_TRUE(update.ok()) << update.status();
  ASSERT_EQ(update->size(), 1u);
  EXPECT_EQ((*update)[0].sql,
            "UPDATE \"public\".\"items_copy\" AS d SET (\"id\", \"qty\") = (SELECT (id), "
            "(qty::bigint) FROM (SELECT $1::bigint AS \"id\", $2::integer AS \"qty\", $3::text "
            "AS \"body\") AS t) WHERE (d.\"id\") = ($4::bigint)");
  EXPECT_THAT((*update)[0].sql, Not(HasSubstr("label")));
  EXPECT_EQ((*update)[0].params[2], std::nullopt);
  EXPECT_EQ((*update)[0].params[3], std::optional<std::string>("7"));
}

TEST(FollowApplyTest, ANewKeyWithEveryValueDeletesTheOldRowAndUpsertsTheNew) {
  auto update = ChangeStatements(
      Spec(), Items(),
      Update{16384, 'K', {Text("7"), Null(), Null()}, {Text("8"), Text("5"), Text("b")}});
  ASSERT_TRUE(update.ok()) << update.status();
  ASSERT_EQ(update->size(), 2u);
  EXPECT_EQ((*update)[0].sql,
            "DELETE FROM \"public\".\"items_copy\" AS d WHERE (d.\"id\") = ($1::bigint)");
  EXPECT_EQ((*update)[0].params[0], std::optional<std::string>("7"));
  EXPECT_THAT((*update)[1].sql, HasSubstr("INSERT INTO"));
}

TEST(FollowApplyTest, ANewKeyWithAnUnchangedValueMovesTheRowAndChecksItArrived) {
  auto update = ChangeStatements(
      Spec(), Items(),
      Update{16384, 'K', {Text("7"), Null(), Null()}, {Text("8"), Text("5"), Unchanged()}});
  ASSERT_TRUE(update.ok()) << update.status();
  ASSERT_EQ(update->size(), 4u);
  // The row at the new key gives way only to an old row that can move there.
  EXPECT_THAT((*update)[0].sql, HasSubstr("DELETE FROM"));
  EXPECT_THAT((*update)[0].sql,
              HasSubstr("AND EXISTS (SELECT FROM \"public\".\"items_copy\" AS o"));
  EXPECT_THAT((*update)[1].sql, HasSubstr("WHERE (d.\"id\") = ($4::bigint)"));
  EXPECT_EQ((*update)[1].params[3], std::optional<std::string>("7"));
  EXPECT_EQ((*update)[2].params[3], std::optional<std::string>("8"));
  EXPECT_THAT((*update)[3].sql, HasSubstr("SELECT EXISTS"));
  EXPECT_TRUE((*update)[3].must_hold);
}

TEST(FollowApplyTest, ADeleteDeletesByTheKeyOfTheOldRow) {
  auto deleted = ChangeStatements(Spec(), Items(), Delete{16384, 'K', {Text("9"), Null(), Null()}});
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  ASSERT_EQ(deleted->size(), 1u);
  EXPECT_EQ((*deleted)[0].params, std::vector<pg::Param>{std::string("9")});
}

TEST(FollowApplyTest, AColumnTheJobDoesNotKnowStopsTheApply) {
  Relation grown = Items();
  RelationColumn added;
  added.name = "added_later";
  grown.columns.push_back(added);
  auto statements =
      ChangeStatements(Spec(), grown, Insert{16384, {Text("7"), Text("3"), Text("a"), Text("x")}});
  ASSERT_FALSE(statements.ok());
  EXPECT_THAT(std::string(statements.status().message()), HasSubstr("\"added_later\""));
}

TEST(FollowApplyTest, AKeyNotSentIsAnErrorNotAGuess) {
  auto deleted = ChangeStatements(Spec(), Items(), Delete{16384, 'K', {Null(), Null(), Null()}});
  ASSERT_FALSE(deleted.ok());
  EXPECT_THAT(std::string(deleted.status().message()), HasSubstr("replica identity"));
  auto short_row = ChangeStatements(Spec(), Items(), Insert{16384, {Text("7")}});
  EXPECT_FALSE(short_row.ok());
}

}  // namespace
}  // namespace pgbackfill::follow
