// Passwords in connection strings: found where they are written (libpq decides what is one),
// replaced without disturbing the rest, and scrubbed from libpq's own messages.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "pgbackfill/pg/connection.h"
#include "pgbackfill/pg/dsn.h"

namespace pgbackfill::pg {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// `dsn` with what FindDsnSecrets finds replaced by kRedacted, or "<error>".
std::string Redacted(std::string_view dsn) {
  absl::StatusOr<std::vector<SecretSpan>> spans = FindDsnSecrets(dsn);
  if (!spans.ok()) return "<error>";
  std::string out(dsn);
  for (auto it = spans->rbegin(); it != spans->rend(); ++it) {
    out.replace(it->offset, it->length, kRedacted);
  }
  return out;
}

TEST(DsnSecretsTest, AKeywordValuePasswordIsReplacedAndNothingElse) {
  EXPECT_EQ(Redacted("host=db user=app password=s3cret dbname=shop"),
            "host=db user=app password=******** dbname=shop");
  EXPECT_EQ(Redacted("password = s3cret host=db"), "password = ******** host=db");
}

TEST(DsnSecretsTest, AQuotedPasswordIsReplacedWithItsQuotesAndEscapes) {
  EXPECT_EQ(Redacted(R"(host=db password='a b\'c' user=app)"),
            "host=db password=******** user=app");
  EXPECT_EQ(Redacted(R"(host=db password=a\ b)"), "host=db password=********");
}

TEST(DsnSecretsTest, AUriPasswordIsReplacedInTheUserInfo) {
  EXPECT_EQ(Redacted("postgresql://app:s3cret@db:5432/shop"),
            "postgresql://app:********@db:5432/shop");
  EXPECT_EQ(Redacted("postgres://app:s%33cret@db/shop?sslmode=require"),
            "postgres://app:********@db/shop?sslmode=require");
}

TEST(DsnSecretsTest, AUriPasswordIsReplacedInTheQuery) {
  EXPECT_EQ(Redacted("postgresql://app@db/shop?sslmode=require&password=s3cret"),
            "postgresql://app@db/shop?sslmode=require&password=********");
  // Given in both places, libpq uses the query's; both are secrets.
  EXPECT_EQ(Redacted("postgresql://app:one@db/shop?password=two"),
            "postgresql://app:********@db/shop?password=********");
}

TEST(DsnSecretsTest, MultiHostStringsKeepTheirHosts) {
  EXPECT_EQ(Redacted("postgresql://app:s3cret@h1:5432,h2:5433/shop?target_session_attrs=any"),
            "postgresql://app:********@h1:5432,h2:5433/shop?target_session_attrs=any");
  EXPECT_EQ(Redacted("host=h1,h2 port=5432,5433 password=s3cret"),
            "host=h1,h2 port=5432,5433 password=********");
}

TEST(DsnSecretsTest, EveryOptionLibpqHidesIsASecret) {
  // sslpassword unlocks the client key: libpq hides it as it hides password.
  EXPECT_EQ(Redacted("host=db sslpassword=keypass"), "host=db sslpassword=********");
  // Given twice, libpq uses the last; both are removed.
  EXPECT_EQ(Redacted("password=one host=db password=two"),
            "password=******** host=db password=********");
}

TEST(DsnSecretsTest, AnEnvironmentReferenceIsNotASecret) {
  EXPECT_EQ(Redacted("host=db password=${PGPW}"), "host=db password=${PGPW}");
  EXPECT_EQ(Redacted("postgresql://app:${PGPW}@db/shop"), "postgresql://app:${PGPW}@db/shop");
  // A default after :- is written in the file: a secret.
  EXPECT_EQ(Redacted("host=db password=${PGPW:-fallback}"), "host=db password=********");
}

TEST(DsnSecretsTest, AValueThatMerelyContainsTheWordPasswordIsKept) {
  for (std::string_view dsn :
       {"host=db application_name=password user=password_reset dbname=passwords",
        "postgresql://password@db/password?application_name=password", "password", "",
        "host=db password=", "postgresql://app:@db/shop"}) {
    EXPECT_EQ(Redacted(dsn), dsn);
  }
}

TEST(DsnSecretsTest, AStringLibpqCannotParseStillHasItsPasswordFound) {
  // %zz is no escape: libpq refuses the string, and quotes the token in its message.
  EXPECT_EQ(Redacted("postgresql://app:s3cr%zz@db/shop"), "postgresql://app:********@db/shop");
  EXPECT_EQ(Redacted("host=db password='unterminated"), "host=db password=********");
}

TEST(DsnSecretsTest, LibpqMessagesAboutAStringAreScrubbed) {
  absl::StatusOr<std::string> described = DescribeDsn("postgresql://app:s3cr%zz@db/shop");
  ASSERT_FALSE(described.ok());
  EXPECT_THAT(described.status().message(), HasSubstr("percent-encoded"));
  EXPECT_THAT(described.status().message(), Not(HasSubstr("s3cr")));

  absl::StatusOr<Connection> conn = Connection::Connect("postgresql://app:s3cr%zz@127.0.0.1:1/x");
  ASSERT_FALSE(conn.ok());
  EXPECT_THAT(conn.status().message(), HasSubstr("could not connect"));
  EXPECT_THAT(conn.status().message(), Not(HasSubstr("s3cr")));
}

TEST(DsnSecretsTest, ScrubbingReplacesTheSecretAsWrittenAndAsRead) {
  const std::string dsn = R"(host=db password='a b\'c')";
  EXPECT_EQ(ScrubDsnSecrets(R"(x 'a b\'c' y a b'c z)", dsn), "x ******** y ******** z");
  EXPECT_EQ(ScrubDsnSecrets("nothing to hide", "host=db"), "nothing to hide");
}

}  // namespace
}  // namespace pgbackfill::pg
