package proctest

import "github.com/moqsframe/moqsframe/internal/race"

// raceEnabled builds the commands with -race when the tests run with it, so
// the processes are checked too.
const raceEnabled = race.Enabled
