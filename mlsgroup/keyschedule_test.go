package mlsgroup

import (
	"bytes"
	"testing"

	"github.com/moqsframe/moqsframe/internal/mlsvectors"
	"github.com/thomas-vilte/mls-go/ciphersuite"
	"github.com/thomas-vilte/mls-go/schedule"
)

// The mlswg key-schedule vectors (internal/mlsvectors, copied from the MLS
// working group's test-vectors repository). mls-go's Client.Export
// cannot be fed an exporter_secret, so this test drives the two mls-go
// functions that Member.Export goes through: the key schedule
// (schedule.KeySchedule, which produces exporter_secret each epoch) and
// schedule.Exporter (which group.Export calls with that secret). Suites
// 4, 6 and 7 are not implemented by mls-go v1.6.0 and are skipped.
func TestKeyScheduleVectors(t *testing.T) {
	vecs, err := mlsvectors.KeySchedules()
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, v := range vecs {
		cs := ciphersuite.CipherSuite(v.CipherSuite)
		switch cs {
		case 1, 2, 3, 5:
		default:
			t.Logf("suite %d: not supported by mls-go v1.6.0, skipped", v.CipherSuite)
			continue
		}
		initSecret := v.InitialInitSecret
		for i, ep := range v.Epochs {
			gc := ep.GroupContext
			ks := schedule.NewKeySchedule(cs, ciphersuite.NewSecretForCS(cs, initSecret))
			ks.SetCommitSecret(ciphersuite.NewSecretForCS(cs, ep.CommitSecret))
			joiner, err := ks.ComputeJoinerSecret(gc)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(joiner.AsSlice(), ep.JoinerSecret) {
				t.Fatalf("suite %d epoch %d: joiner_secret mismatch", cs, i)
			}
			if err := ks.SetPskSecretDirect(ciphersuite.NewSecretForCS(cs, ep.PSKSecret)); err != nil {
				t.Fatal(err)
			}
			if _, err := ks.ComputeEpochSecret(gc); err != nil {
				t.Fatal(err)
			}
			secrets, err := ks.DeriveEpochSecrets()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(secrets.ExporterSecret.AsSlice(), ep.ExporterSecret) {
				t.Fatalf("suite %d epoch %d: exporter_secret mismatch", cs, i)
			}
			if !bytes.Equal(secrets.InitSecret.AsSlice(), ep.InitSecret) {
				t.Fatalf("suite %d epoch %d: init_secret mismatch", cs, i)
			}
			// MLS-Exporter(label, context, length), as group.Export calls it. The
			// label is a string (FORMAT.md), used as is, not hex-decoded.
			got, err := schedule.Exporter(ciphersuite.NewSecretForCS(cs, ep.ExporterSecret), cs,
				schedule.ExporterLabel(ep.Exporter.Label), ep.Exporter.Context, ep.Exporter.Length)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, ep.Exporter.Secret) {
				t.Fatalf("suite %d epoch %d: exporter output %x, want %s", cs, i, got, ep.Exporter.Secret)
			}
			initSecret = ep.InitSecret
			checked++
		}
	}
	if checked < 20 {
		t.Fatalf("only %d epochs checked", checked)
	}
	t.Logf("%d epochs checked", checked)
}
