package mlsvectors

import "testing"

func TestKeySchedulesDecode(t *testing.T) {
	vs, err := KeySchedules()
	if err != nil {
		t.Fatal(err)
	}
	epochs := 0
	for _, v := range vs {
		for _, e := range v.Epochs {
			if len(e.ExporterSecret) == 0 || len(e.Exporter.Secret) != e.Exporter.Length {
				t.Fatalf("suite %d: undecoded epoch %+v", v.CipherSuite, e)
			}
			epochs++
		}
	}
	if len(vs) != 7 || epochs != 35 {
		t.Fatalf("%d suites, %d epochs; want 7 and 35", len(vs), epochs)
	}
}
