// The player: WHEP (draft-ietf-wish-whep) from the decrypting sidecar, live
// stats from the browser (getStats) and the sidecar (stats.json).
// window.player holds the figures for tests: framesDecoded, audioPackets,
// width, height, fps, latencies (ms, from stamped video).
const $ = (id) => document.getElementById(id);
window.player = { framesDecoded: 0, audioPackets: 0, width: 0, height: 0, fps: 0, latencies: [], error: null, connected: false };

function setStatus(text, err) {
  $("status").textContent = text;
  $("status").className = err ? "err" : "";
  if (err) window.player.error = text;
}

async function iceGathered(pc) {
  if (pc.iceGatheringState === "complete") return;
  await new Promise((resolve) => {
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && resolve());
    setTimeout(resolve, 2000); // host candidates are enough on a LAN
  });
}

async function start() {
  const cfg = await (await fetch("config.json")).json();
  const params = new URLSearchParams(location.search);
  let url = params.get("whep") || cfg.whep;
  if (url.startsWith(":")) url = location.protocol + "//" + location.hostname + url; // ":port/whep": this host
  url = new URL(url, location.href).href;
  const token = params.get("token") || "";
  const pc = new RTCPeerConnection();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const stream = new MediaStream();
  pc.ontrack = (ev) => { stream.addTrack(ev.track); $("video").srcObject = stream; };
  pc.onconnectionstatechange = () => {
    window.player.connected = pc.connectionState === "connected";
    setStatus(pc.connectionState, pc.connectionState === "failed");
  };
  await pc.setLocalDescription(await pc.createOffer());
  await iceGathered(pc);
  const headers = { "Content-Type": "application/sdp" };
  if (token) headers.Authorization = "Bearer " + token;
  const res = await fetch(url, { method: "POST", headers, body: pc.localDescription.sdp });
  if (res.status !== 201) {
    setStatus("WHEP " + res.status + ": " + (await res.text()), true);
    return;
  }
  const loc = new URL(res.headers.get("Location"), url);
  window.addEventListener("pagehide", () => fetch(loc, { method: "DELETE", headers, keepalive: true }));
  await pc.setRemoteDescription({ type: "answer", sdp: await res.text() });
  setInterval(() => updateStats(pc), 1000);
  readStamps();
}

async function updateStats(pc) {
  const p = window.player;
  (await pc.getStats()).forEach((r) => {
    if (r.type !== "inbound-rtp") return;
    if (r.kind === "video") {
      p.framesDecoded = r.framesDecoded || 0;
      p.width = r.frameWidth || 0;
      p.height = r.frameHeight || 0;
      p.fps = r.framesPerSecond || 0;
    } else if (r.kind === "audio") {
      p.audioPackets = r.packetsReceived || 0;
    }
  });
  $("resolution").textContent = p.width ? p.width + "×" + p.height : "–";
  $("fps").textContent = p.fps;
  $("framesDecoded").textContent = p.framesDecoded;
  $("audioPackets").textContent = p.audioPackets;
  if (p.latencies.length) {
    const s = [...p.latencies].sort((a, b) => a - b);
    $("latency").textContent = s[Math.floor(s.length / 2)] + " ms median of " + s.length + " frames";
  }
  try {
    const st = await (await fetch("stats.json")).json();
    $("decrypted").textContent = st.objects_decrypted;
    $("authFailures").textContent = st.auth_failures;
    $("lost").textContent = st.objects_lost;
    $("epoch").textContent = st.group ? st.epoch : "– (static key)";
    $("roster").textContent = st.group ? st.roster.join(", ") : "–";
    p.sidecar = st;
  } catch (e) { /* the sidecar is restarting: keep the last figures */ }
}

// readStamps reads the timestamp the publish page draws into each frame.
function readStamps() {
  const v = $("video");
  if (!v.requestVideoFrameCallback) return;
  const c = document.createElement("canvas");
  const ctx = c.getContext("2d", { willReadFrequently: true });
  const onFrame = () => {
    if (v.videoWidth) {
      c.width = v.videoWidth;
      c.height = v.videoHeight;
      ctx.drawImage(v, 0, 0);
      const ms = readStamp(ctx, c.width);
      if (ms !== null) {
        const lat = (Date.now() % 2 ** 32) - ms;
        if (lat >= 0 && lat < 10000) {
          window.player.latencies.push(lat);
          if (window.player.latencies.length > 600) window.player.latencies.shift();
        }
      }
    }
    v.requestVideoFrameCallback(onFrame);
  };
  v.requestVideoFrameCallback(onFrame);
}

$("unmute").onclick = () => { $("video").muted = false; };
start().catch((e) => setStatus(String(e), true));
