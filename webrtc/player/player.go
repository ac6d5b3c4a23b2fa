// Package player serves the browser pages of the sidecar, embedded in the
// binary (no build step, no CDN): the player (index.html: WHEP playback
// with live stats) for the decrypting sidecar, and the publish page
// (publish.html: camera and microphone over WHIP) for the encrypting one.
package player

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Stats is what the player shows of the decrypting sidecar (stats.json).
type Stats struct {
	ObjectsDecrypted uint64   `json:"objects_decrypted"`
	AuthFailures     uint64   `json:"auth_failures"`
	ObjectsLost      uint64   `json:"objects_lost"`
	Viewers          int      `json:"viewers"`
	Group            string   `json:"group,omitempty"` // security group; empty with a static key
	Epoch            uint64   `json:"epoch"`
	Roster           []string `json:"roster,omitempty"` // member names of the epoch
}

// Config configures the player's handler.
type Config struct {
	// WHEP is the WHEP endpoint's URL: absolute ("http://host:8081/whep")
	// or ":PORT/PATH", taken relative to the page's host.
	WHEP  string
	Stats func() Stats // read at each stats.json request (about 1 Hz per viewer)
}

// Handler serves the player at / (index.html, player.js, stamp.js),
// config.json and stats.json.
func Handler(cfg Config) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /", pages())
	mux.HandleFunc("GET /config.json", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]string{"whep": cfg.WHEP})
	})
	mux.HandleFunc("GET /stats.json", func(w http.ResponseWriter, _ *http.Request) {
		var st Stats
		if cfg.Stats != nil {
			st = cfg.Stats()
		}
		writeJSON(w, st)
	})
	return mux
}

// PublishHandler serves the publish page at / and /publish.html; it
// publishes to /whip of its own origin unless ?whip=URL says otherwise.
func PublishHandler() http.Handler {
	files := pages()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			r2 := *r
			u := *r.URL
			u.Path = "/publish.html"
			r2.URL = &u
			r = &r2
		}
		files.ServeHTTP(w, r)
	})
}

func pages() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return http.FileServerFS(sub)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}
