// A timestamp drawn into the video as 40 black/white blocks across the top
// 24 rows: 4 marker bits (1010), the 32 low bits of Date.now() in ms, 4
// marker bits (0101). The publish page draws it, the player reads it back:
// both run on the same clock when they run on the same machine, so the
// difference is the glass-to-glass latency.
const STAMP_W = 640, STAMP_BLOCKS = 40, STAMP_H = 24;
function stampBits(ms) {
  const bits = [1, 0, 1, 0];
  for (let i = 31; i >= 0; i--) bits.push(Math.floor(ms / 2 ** i) % 2);
  return bits.concat([0, 1, 0, 1]);
}
function drawStamp(ctx, ms) {
  const w = STAMP_W / STAMP_BLOCKS;
  stampBits(ms % 2 ** 32).forEach((b, i) => {
    ctx.fillStyle = b ? "#fff" : "#000";
    ctx.fillRect(i * w, 0, w, STAMP_H);
  });
}
// readStamp returns the stamp in a frame drawn on ctx (width px wide), or
// null if the markers are not there.
function readStamp(ctx, width) {
  const scale = width / STAMP_W, w = STAMP_W / STAMP_BLOCKS;
  const row = ctx.getImageData(0, Math.round((STAMP_H / 2) * scale), width, 1).data;
  const bits = [];
  for (let i = 0; i < STAMP_BLOCKS; i++) {
    const x = Math.round((i * w + w / 2) * scale) * 4;
    bits.push(0.299 * row[x] + 0.587 * row[x + 1] + 0.114 * row[x + 2] > 128 ? 1 : 0);
  }
  if (bits.slice(0, 4).join("") !== "1010" || bits.slice(36).join("") !== "0101") return null;
  let ms = 0;
  for (let i = 4; i < 36; i++) ms = ms * 2 + bits[i];
  return ms;
}
