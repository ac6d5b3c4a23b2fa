// Package mlsvectors holds the MLS working group's key-schedule test vectors
// (key-schedule.json, format in shared/vectors/mls/FORMAT.md), decoded, for
// the tests of packages that build on MLS exporters.
package mlsvectors

import (
	_ "embed"
	"encoding/hex"
	"encoding/json"
)

//go:embed key-schedule.json
var keyScheduleJSON []byte

// KeySchedule is one cipher suite's run of epochs.
type KeySchedule struct {
	CipherSuite       uint16
	InitialInitSecret []byte
	Epochs            []Epoch
}

// Epoch is one epoch's inputs and outputs.
type Epoch struct {
	CommitSecret, PSKSecret, GroupContext []byte
	JoinerSecret, InitSecret              []byte
	ExporterSecret                        []byte
	Exporter                              Exporter
}

// Exporter is one MLS-Exporter call and its output. The label is text, used
// as written; the context is hex in the file.
type Exporter struct {
	Label   string
	Context []byte
	Length  int
	Secret  []byte
}

type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

// KeySchedules decodes the key-schedule vectors.
func KeySchedules() ([]KeySchedule, error) {
	var raw []struct {
		CipherSuite       uint16   `json:"cipher_suite"`
		InitialInitSecret hexBytes `json:"initial_init_secret"`
		Epochs            []struct {
			CommitSecret   hexBytes `json:"commit_secret"`
			PSKSecret      hexBytes `json:"psk_secret"`
			GroupContext   hexBytes `json:"group_context"`
			JoinerSecret   hexBytes `json:"joiner_secret"`
			InitSecret     hexBytes `json:"init_secret"`
			ExporterSecret hexBytes `json:"exporter_secret"`
			Exporter       struct {
				Label   string   `json:"label"`
				Context hexBytes `json:"context"`
				Length  int      `json:"length"`
				Secret  hexBytes `json:"secret"`
			} `json:"exporter"`
		} `json:"epochs"`
	}
	if err := json.Unmarshal(keyScheduleJSON, &raw); err != nil {
		return nil, err
	}
	out := make([]KeySchedule, len(raw))
	for i, r := range raw {
		ks := KeySchedule{CipherSuite: r.CipherSuite, InitialInitSecret: r.InitialInitSecret}
		for _, e := range r.Epochs {
			ks.Epochs = append(ks.Epochs, Epoch{
				CommitSecret: e.CommitSecret, PSKSecret: e.PSKSecret, GroupContext: e.GroupContext,
				JoinerSecret: e.JoinerSecret, InitSecret: e.InitSecret, ExporterSecret: e.ExporterSecret,
				Exporter: Exporter{Label: e.Exporter.Label, Context: e.Exporter.Context, Length: e.Exporter.Length, Secret: e.Exporter.Secret},
			})
		}
		out[i] = ks
	}
	return out, nil
}
