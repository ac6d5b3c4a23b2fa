package group

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/moqsframe/moqsframe/coord"
	"github.com/moqsframe/moqsframe/coord/moqforward"
	"github.com/moqsframe/moqsframe/coord/wire"
	"github.com/moqsframe/moqsframe/identity"
	"github.com/moqsframe/moqsframe/keyschedule"
	"github.com/moqsframe/moqsframe/moq"
	"github.com/moqsframe/moqsframe/sframe"
)

// Config configures a Member.
type Config struct {
	// Certificate is the member's X.509 identity (an ECDSA P-256
	// certificate issued by the deployment's CA and its key; see package
	// identity). The member's identity is the name in it. Required.
	Certificate *identity.Certificate
	// Verifier holds the trust anchors every other member's certificate
	// must chain to. Required.
	Verifier *identity.Verifier
	// Policy says which identities may be in the group; nil admits every
	// name the Verifier accepts (identity.AllowAll).
	Policy *identity.Policy
	Group  string        // group name (wire.ValidGroupName)
	CS     *coord.Client // required
	// Session is the MoQ session to the relay. It may be shared by several
	// Members. nil: no MoQ, catch-up from the CS archive only (polling).
	Session *moq.Session
	Prefix  []string           // namespace prefix; empty = moqforward.DefaultPrefix
	Suite   sframe.CipherSuite // SFrame suite; 0 = AES128GCMSHA256_128
	// ScheduleOptions are passed to keyschedule.New.
	ScheduleOptions []keyschedule.Option
	// Manual disables automatic commits: the application calls Commit.
	Manual bool
	// CommitDelay is how long the designated committer (lowest leaf index
	// among members not leaving) waits after seeing a request before
	// committing, to batch requests. Default 50ms.
	CommitDelay time.Duration
	// BackupDelay: the member of rank r (1..MaxBackups) commits pending
	// requests only if they are still pending CommitDelay + r*BackupDelay
	// after it saw them. Default 2s; MaxBackups default 2.
	BackupDelay time.Duration
	MaxBackups  int
	// PollInterval is how often the member asks the CS for its state to
	// find missed objects, and retries failed posts. Default 1s.
	PollInterval time.Duration
	// RolloverTimeout is how long, after a new epoch, this member keeps
	// sealing with the previous one while waiting for every member to
	// acknowledge the new one (coordinated roll-over: acknowledgements go
	// through the CS on the group's "ack" track). It stops objects that
	// other members cannot open yet. An epoch that removed members is used
	// at once. Default 1s; negative: always switch at once.
	RolloverTimeout time.Duration
	// LivenessTimeout: a member the CS has not heard from (heartbeats,
	// acknowledgements) for this long is silent, and the committer
	// (lowest leaf among members neither leaving nor silent) removes it.
	// Use the CS's liveness timeout (coord.Config.LivenessTimeout). Default
	// DefaultLivenessTimeout; negative: no heartbeats, nobody is removed
	// for silence.
	LivenessTimeout time.Duration
	// HeartbeatInterval is how often the member tells the CS it is alive
	// and reads who else is. Default LivenessTimeout/6.
	HeartbeatInterval time.Duration
	Logger            *slog.Logger
}

// DefaultLivenessTimeout is Config.LivenessTimeout's default (the CS's
// default too: coord.DefaultLivenessTimeout).
const DefaultLivenessTimeout = coord.DefaultLivenessTimeout

// withDefaults checks cfg and fills in the defaults.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.CS == nil {
		return cfg, errors.New("group: Config.CS is required")
	}
	if !wire.ValidGroupName(cfg.Group) {
		return cfg, fmt.Errorf("group: invalid group name %q", cfg.Group)
	}
	if cfg.Certificate == nil || cfg.Verifier == nil {
		return cfg, errors.New("group: Config.Certificate and Config.Verifier are required (see package identity)")
	}
	if cfg.Policy == nil {
		cfg.Policy = identity.AllowAll()
	}
	if len(cfg.Prefix) == 0 {
		cfg.Prefix = moqforward.DefaultPrefix
	}
	if cfg.Suite == 0 {
		cfg.Suite = sframe.AES128GCMSHA256_128
	}
	if cfg.CommitDelay <= 0 {
		cfg.CommitDelay = 50 * time.Millisecond
	}
	if cfg.BackupDelay <= 0 {
		cfg.BackupDelay = 2 * time.Second
	}
	if cfg.MaxBackups <= 0 {
		cfg.MaxBackups = 2
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.RolloverTimeout == 0 {
		cfg.RolloverTimeout = time.Second
	}
	if cfg.LivenessTimeout == 0 {
		cfg.LivenessTimeout = DefaultLivenessTimeout
	}
	if cfg.HeartbeatInterval <= 0 && cfg.LivenessTimeout > 0 {
		cfg.HeartbeatInterval = cfg.LivenessTimeout / 6
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}
