// The pgbackfill executable: parse arguments, run, map the outcome to an exit code. Nothing else.
#include "pgbackfill/cli/cli.h"

int main(int argc, char** argv) { return pgbackfill::cli::Main(argc, argv); }
