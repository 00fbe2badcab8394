// Re-muxes a fragmented MP4 with Mediabunny (the browser muxer the broadcast page uses) into a
// fragmented MP4 of its own: `node mediabunny_remux.mjs <in.mp4> <out.mp4>`. Packets are
// copied (no re-encode), each track in decode order, interleaved by timestamp. Used by
// `cmaf.rs` to check that Mediabunny's CMAF (trun version 1 with negative composition
// offsets, its own timescales, default-base-is-moof) remuxes like ffmpeg's.
import * as fs from 'node:fs';
import {
  ALL_FORMATS,
  BufferSource,
  BufferTarget,
  EncodedAudioPacketSource,
  EncodedPacketSink,
  EncodedVideoPacketSource,
  Input,
  Mp4OutputFormat,
  Output,
} from 'mediabunny';

const [src, dst] = process.argv.slice(2);
const input = new Input({ formats: ALL_FORMATS, source: new BufferSource(fs.readFileSync(src)) });
const videoTrack = await input.getPrimaryVideoTrack();
const audioTrack = await input.getPrimaryAudioTrack();
const output = new Output({
  format: new Mp4OutputFormat({ fastStart: 'fragmented', minimumFragmentDuration: 0.1 }),
  target: new BufferTarget(),
});
const video = new EncodedVideoPacketSource('avc');
const audio = new EncodedAudioPacketSource(audioTrack.codec);
output.addVideoTrack(video);
output.addAudioTrack(audio);
await output.start();

const packets = async (track) => {
  const list = [];
  for await (const packet of new EncodedPacketSink(track).packets()) list.push(packet);
  return list;
};
const v = await packets(videoTrack);
const a = await packets(audioTrack);
const videoConfig = await videoTrack.getDecoderConfig();
const audioConfig = await audioTrack.getDecoderConfig();
let i = 0;
let j = 0;
while (i < v.length || j < a.length) {
  if (j >= a.length || (i < v.length && v[i].timestamp <= a[j].timestamp)) {
    await video.add(v[i], i === 0 ? { decoderConfig: videoConfig } : undefined);
    i += 1;
  } else {
    await audio.add(a[j], j === 0 ? { decoderConfig: audioConfig } : undefined);
    j += 1;
  }
}
await output.finalize();
fs.writeFileSync(dst, Buffer.from(output.target.buffer));
