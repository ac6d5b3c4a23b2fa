// The publisher: WHIP (RFC 9725). H.264 is preferred (setCodecPreferences)
// because the sidecar passes H.264 and Opus through.
// window.publisher holds the state for tests: connected, codec, error.
const $ = (id) => document.getElementById(id);
window.publisher = { connected: false, codec: "", error: null, framesSent: 0 };
const params = new URLSearchParams(location.search);
$("url").value = params.get("whip") || location.origin + "/whip";
$("token").value = params.get("token") || "";
$("stamp").checked = params.has("stamp");
let session = null;

function setStatus(text, err) {
  $("status").textContent = text;
  $("status").className = err ? "err" : "";
  if (err) window.publisher.error = text;
}

async function videoTrack(media) {
  const cam = media.getVideoTracks()[0];
  if (!$("stamp").checked) return cam;
  const v = document.createElement("video");
  v.muted = true;
  v.srcObject = new MediaStream([cam]);
  await v.play();
  const c = document.createElement("canvas");
  c.width = 640;
  c.height = 480;
  const ctx = c.getContext("2d");
  const draw = () => {
    ctx.drawImage(v, 0, 0, c.width, c.height);
    drawStamp(ctx, Date.now());
  };
  setInterval(draw, 1000 / 30);
  draw();
  return c.captureStream(30).getVideoTracks()[0];
}

async function publish() {
  $("go").disabled = true;
  const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
  const video = await videoTrack(media);
  $("preview").srcObject = new MediaStream([video]);
  const pc = new RTCPeerConnection();
  const vt = pc.addTransceiver(video, { direction: "sendonly" });
  const h264 = RTCRtpSender.getCapabilities("video").codecs.filter((c) => c.mimeType.toLowerCase() === "video/h264");
  if (h264.length) vt.setCodecPreferences(h264);
  else setStatus("this browser has no H.264 encoder; the sidecar will refuse the offer");
  for (const a of media.getAudioTracks()) pc.addTransceiver(a, { direction: "sendonly" });
  pc.onconnectionstatechange = () => {
    window.publisher.connected = pc.connectionState === "connected";
    setStatus(pc.connectionState, pc.connectionState === "failed");
  };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && resolve());
    setTimeout(resolve, 2000);
  });
  const headers = { "Content-Type": "application/sdp" };
  if ($("token").value) headers.Authorization = "Bearer " + $("token").value;
  const url = $("url").value;
  const res = await fetch(url, { method: "POST", headers, body: pc.localDescription.sdp });
  if (res.status !== 201) {
    setStatus("WHIP " + res.status + ": " + (await res.text()), true);
    $("go").disabled = false;
    return;
  }
  session = { pc, headers, loc: new URL(res.headers.get("Location"), url) };
  await pc.setRemoteDescription({ type: "answer", sdp: await res.text() });
  $("stop").disabled = false;
  setInterval(async () => {
    (await pc.getStats()).forEach((r) => {
      if (r.type === "outbound-rtp" && r.kind === "video") window.publisher.framesSent = r.framesSent || 0;
      if (r.type === "codec" && r.mimeType.startsWith("video/")) window.publisher.codec = r.mimeType;
    });
  }, 1000);
}

async function stop() {
  if (!session) return;
  await fetch(session.loc, { method: "DELETE", headers: session.headers });
  session.pc.close();
  session = null;
  setStatus("stopped");
  $("stop").disabled = true;
  $("go").disabled = false;
}

$("go").onclick = () => publish().catch((e) => { setStatus(String(e), true); $("go").disabled = false; });
$("stop").onclick = () => stop().catch((e) => setStatus(String(e), true));
if (params.has("autostart")) $("go").click();
