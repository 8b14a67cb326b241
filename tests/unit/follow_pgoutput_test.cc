// pgoutput's messages and the replication frames, decoded from bytes laid out as the protocol
// documentation gives them; tests/integration/pgoutput_stream_test.cc decodes what a real server
// sends.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "pgbackfill/follow/pgoutput.h"
#include "support/status_testing.h"

namespace pgbackfill::follow {
namespace {

using ::testing::HasSubstr;

// Builds a message field by field, big-endian.
class Bytes {
 public:
  explicit Bytes(char type) { out_.push_back(type); }
  Bytes& U8(uint8_t v) { return Put(v, 1); }
  Bytes& U16(uint16_t v) { return Put(v, 2); }
  Bytes& U32(uint32_t v) { return Put(v, 4); }
  Bytes& U64(uint64_t v) { return Put(v, 8); }
  Bytes& Str(const std::string& s) {
    out_ += s;
    out_.push_back('\0');
    return *this;
  }
  Bytes& Raw(const std::string& s) {
    out_ += s;
    return *this;
  }
  Bytes& Text(const std::string& s) {
    U8('t');
    U32(static_cast<uint32_t>(s.size()));
    return Raw(s);
  }
  const std::string& str() const { return out_; }

 private:
  Bytes& Put(uint64_t v, int width) {
    for (int shift = (width - 1) * 8; shift >= 0; shift -= 8) {
      out_.push_back(static_cast<char>((v >> shift) & 0xff));
    }
    return *this;
  }
  std::string out_;
};

std::string RelationBytes() {
  return Bytes('R')
      .U32(16390)
      .Str("public")
      .Str("items")
      .U8('d')
      .U16(3)
      .U8(1)
      .Str("id")
      .U32(20)
      .U32(0xffffffff)
      .U8(0)
      .Str("note")
      .U32(25)
      .U32(0xffffffff)
      .U8(0)
      .Str("big")
      .U32(25)
      .U32(0xffffffff)
      .str();
}

TEST(PgoutputTest, BeginAndCommitCarryTheirPositionsAndTimes) {
  ASSERT_OK_AND_ASSIGN(Message begin,
                       DecodeMessage(Bytes('B').U64(0x16B374D848).U64(1234567).U32(742).str()));
  ASSERT_TRUE(std::holds_alternative<Begin>(begin));
  EXPECT_EQ(std::get<Begin>(begin).final_lsn, 0x16B374D848u);
  EXPECT_EQ(std::get<Begin>(begin).commit_time, 1234567);
  EXPECT_EQ(std::get<Begin>(begin).xid, 742u);
  EXPECT_EQ(MessageName(begin), "Begin");

  ASSERT_OK_AND_ASSIGN(Message commit,
                       DecodeMessage(Bytes('C').U8(0).U64(100).U64(180).U64(99).str()));
  ASSERT_TRUE(std::holds_alternative<Commit>(commit));
  EXPECT_EQ(std::get<Commit>(commit).commit_lsn, 100u);
  EXPECT_EQ(std::get<Commit>(commit).end_lsn, 180u);
}

TEST(PgoutputTest, ARelationDescribesItsColumnsAndWhichFormTheKey) {
  ASSERT_OK_AND_ASSIGN(Message message, DecodeMessage(RelationBytes()));
  const Relation& relation = std::get<Relation>(message);
  EXPECT_EQ(relation.id, 16390u);
  EXPECT_EQ(relation.schema, "public");
  EXPECT_EQ(relation.name, "items");
  ASSERT_EQ(relation.columns.size(), 3u);
  EXPECT_TRUE(relation.columns[0].key);
  EXPECT_EQ(relation.columns[0].name, "id");
  EXPECT_EQ(relation.columns[0].type_oid, 20u);
  EXPECT_EQ(relation.columns[0].type_modifier, -1);
  EXPECT_FALSE(relation.columns[1].key);
}

TEST(PgoutputTest, AnInsertKeepsNullTextAndBinaryValuesApart) {
  const std::string bytes = Bytes('I')
                                .U32(16390)
                                .U8('N')
                                .U16(3)
                                .Text("42")
                                .U8('n')
                                .U8('b')
                                .U32(2)
                                .Raw(std::string("\0\x01", 2))
                                .str();
  ASSERT_OK_AND_ASSIGN(Message message, DecodeMessage(bytes));
  const Insert& insert = std::get<Insert>(message);
  ASSERT_EQ(insert.row.size(), 3u);
  EXPECT_EQ(insert.row[0].kind, Value::Kind::kText);
  EXPECT_EQ(insert.row[0].bytes, "42");
  EXPECT_TRUE(insert.row[1].null());
  EXPECT_EQ(insert.row[2].kind, Value::Kind::kBinary);
  EXPECT_EQ(insert.row[2].bytes, std::string("\0\x01", 2));
}

TEST(PgoutputTest, AnUpdateTellsAnUnchangedToastValueFromANullOne) {
  const std::string bytes = Bytes('U').U32(16390).U8('N').U16(3).Text("42").U8('n').U8('u').str();
  ASSERT_OK_AND_ASSIGN(Message message, DecodeMessage(bytes));
  const Update& update = std::get<Update>(message);
  EXPECT_FALSE(update.old_kind.has_value());
  EXPECT_TRUE(update.old_row.empty());
  EXPECT_TRUE(update.row[1].null());
  EXPECT_FALSE(update.row[1].unchanged());
  EXPECT_TRUE(update.row[2].unchanged());
}

TEST(PgoutputTest, AnUpdateOfTheKeyCarriesTheOldKeyFirst) {
  const std::string bytes = Bytes('U')
                                .U32(16390)
                                .U8('K')
                                .U16(3)
                                .Text("41")
                                .U8('n')
                                .U8('n')
                                .U8('N')
                                .U16(3)
                                .Text("42")
                                .Text("x")
                                .U8('u')
                                .str();
  ASSERT_OK_AND_ASSIGN(Message message, DecodeMessage(bytes));
  const Update& update = std::get<Update>(message);
  ASSERT_EQ(update.old_kind, 'K');
  EXPECT_EQ(update.old_row[0].bytes, "41");
  EXPECT_EQ(update.row[0].bytes, "42");
}

TEST(PgoutputTest, DeleteAndTruncateNameWhatTheyRemove) {
  ASSERT_OK_AND_ASSIGN(Message del,
                       DecodeMessage(Bytes('D').U32(7).U8('O').U16(1).Text("9").str()));
  EXPECT_EQ(std::get<Delete>(del).old_kind, 'O');
  EXPECT_EQ(std::get<Delete>(del).old_row[0].bytes, "9");

  ASSERT_OK_AND_ASSIGN(Message truncate,
                       DecodeMessage(Bytes('T').U32(2).U8(3).U32(7).U32(8).str()));
  const Truncate& t = std::get<Truncate>(truncate);
  EXPECT_THAT(t.relations, ::testing::ElementsAre(7u, 8u));
  EXPECT_TRUE(t.cascade());
  EXPECT_TRUE(t.restart_identity());
}

TEST(PgoutputTest, EveryCutShortMessageIsAnErrorNeverARead) {
  const std::vector<std::string> whole = {
      RelationBytes(),
      Bytes('U').U32(1).U8('K').U16(1).Text("a").U8('N').U16(2).Text("b").U8('u').str(),
      Bytes('M').U8(1).U64(5).Str("p").U32(3).Raw("abc").str(),
      Bytes('T').U32(1).U8(0).U32(7).str(),
      Bytes('C').U8(0).U64(1).U64(2).U64(3).str(),
  };
  for (const std::string& bytes : whole) {
    ASSERT_OK(DecodeMessage(bytes).status()) << bytes;
    for (size_t cut = 0; cut < bytes.size(); ++cut) {
      EXPECT_FALSE(DecodeMessage(bytes.substr(0, cut)).ok()) << "cut at " << cut;
    }
    EXPECT_THAT(DecodeMessage(bytes + "x").status().message(), HasSubstr("trailing"));
  }
}

TEST(PgoutputTest, CountsLargerThanTheMessageAreRefusedBeforeAnythingIsSized) {
  // 65,535 columns, 4 GiB values, 4 billion relations: each in a message of a few bytes.
  EXPECT_THAT(DecodeMessage(Bytes('I').U32(1).U8('N').U16(65535).str()).status().message(),
              HasSubstr("column count says 65535"));
  EXPECT_THAT(DecodeMessage(Bytes('I').U32(1).U8('N').U16(1).U8('t').U32(0xffffffff).str())
                  .status()
                  .message(),
              HasSubstr("value length says 4294967295"));
  EXPECT_THAT(DecodeMessage(Bytes('T').U32(0xffffffff).U8(0).str()).status().message(),
              HasSubstr("relation count"));
}

TEST(PgoutputTest, UnknownMessagesAndTagsAreNamed) {
  EXPECT_THAT(DecodeMessage(Bytes('S').U32(1).U8(1).str()).status().message(),
              HasSubstr("unknown type 0x53 ('S')"));
  EXPECT_THAT(DecodeMessage(Bytes('I').U32(1).U8('X').U16(0).str()).status().message(),
              HasSubstr("tuple tag is 0x58"));
  EXPECT_THAT(DecodeMessage(Bytes('I').U32(1).U8('N').U16(1).U8('z').str()).status().message(),
              HasSubstr("column kind is unknown: 0x7a"));
  EXPECT_FALSE(DecodeMessage("").ok());
}

TEST(PgoutputTest, AChangeBeforeItsRelationIsAnErrorAndARowMustFitIt) {
  RelationMap relations;
  EXPECT_FALSE(relations.Find(16390).ok());
  ASSERT_OK_AND_ASSIGN(Message message, DecodeMessage(RelationBytes()));
  relations.Remember(std::get<Relation>(message));
  ASSERT_OK_AND_ASSIGN(const Relation* relation, relations.Find(16390));
  EXPECT_EQ(relation->name, "items");
  EXPECT_OK(CheckTupleFits(*relation, Tuple(3)));
  EXPECT_THAT(CheckTupleFits(*relation, Tuple(2)).message(),
              HasSubstr("public.items has 2 value(s) where its Relation message described 3"));
}

TEST(ReplicationFramesTest, XLogDataViewsItsPayloadAndKeepalivesAskForReplies) {
  const std::string frame = Bytes('w').U64(10).U64(20).U64(30).Raw("Bpayload").str();
  ASSERT_OK_AND_ASSIGN(ServerFrame data, DecodeServerFrame(frame));
  ASSERT_TRUE(std::holds_alternative<XLogData>(data));
  EXPECT_EQ(std::get<XLogData>(data).wal_start, 10u);
  EXPECT_EQ(std::get<XLogData>(data).wal_end, 20u);
  EXPECT_EQ(std::get<XLogData>(data).payload, "Bpayload");

  ASSERT_OK_AND_ASSIGN(ServerFrame keepalive,
                       DecodeServerFrame(Bytes('k').U64(99).U64(5).U8(1).str()));
  EXPECT_TRUE(std::get<Keepalive>(keepalive).reply_requested);
  EXPECT_EQ(std::get<Keepalive>(keepalive).wal_end, 99u);
  EXPECT_FALSE(DecodeServerFrame(Bytes('k').U64(99).str()).ok());
  EXPECT_FALSE(DecodeServerFrame("x").ok());
}

TEST(ReplicationFramesTest, AStatusUpdateIsLaidOutAsTheServerReadsIt) {
  const std::string update = EncodeStandbyStatus(
      {.written = 3, .flushed = 2, .applied = 1, .client_time = 7, .reply_requested = true});
  EXPECT_EQ(update, Bytes('r').U64(3).U64(2).U64(1).U64(7).U8(1).str());
  EXPECT_EQ(ToUnixMicros(ToPgTimestamp(1'700'000'000'000'000)), 1'700'000'000'000'000);
  EXPECT_EQ(ToPgTimestamp(946'684'800'000'000), 0);
}

}  // namespace
}  // namespace pgbackfill::follow
