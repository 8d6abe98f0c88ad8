#!/usr/bin/python3
"""Embeds vditsrc in a Python application with PyGObject.

Builds "vditsrc ! video/x-raw,format=RGB ! appsink", prints a progress bar from the
element's "vdit-progress" messages and takes each frame from the appsink as soon as
it is generated; with --output-dir each frame is written as a binary PPM image.

    ./vdit_app.py --prompt "a red circle moving left" --frames 8 --output-dir out/

Needs python3-gi and gir1.2-gstreamer-1.0 (Debian), and the vdit plug-in on
GST_PLUGIN_PATH when it is not installed.
"""
import argparse
import os
import sys

try:
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import GLib, Gst
except (ImportError, ValueError) as exc:
    print(f"vdit_app: PyGObject with GStreamer is missing ({exc})", file=sys.stderr)
    sys.exit(77)  # "skipped" for the test runner


class App:
    def __init__(self, args):
        self.args = args
        self.frames = 0
        self.failed = False
        self.loop = GLib.MainLoop()
        self.pipeline = Gst.parse_launch(
            "vditsrc name=src ! video/x-raw,format=RGB ! appsink name=sink "
            "emit-signals=true sync=false"
        )
        self.src = self.pipeline.get_by_name("src")
        self.src.set_property("prompt", args.prompt)
        self.src.set_property("frames", args.frames)
        self.src.set_property("steps", args.steps)
        self.src.set_property("seed", args.seed)
        if args.model:
            self.src.set_property("model", args.model)
        if args.device:
            Gst.util_set_object_arg(self.src, "device", args.device)
        sink = self.pipeline.get_by_name("sink")
        sink.connect("new-sample", self.on_new_sample)
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self.on_message)

    # Called on the streaming thread for each frame: keep it short.
    def on_new_sample(self, sink):
        sample = sink.emit("pull-sample")
        if self.args.output_dir:
            s = sample.get_caps().get_structure(0)
            width, height = s.get_value("width"), s.get_value("height")
            buf = sample.get_buffer()
            ok, info = buf.map(Gst.MapFlags.READ)
            if ok:
                try:
                    # RGB rows are padded to 4 bytes in GStreamer's default layout
                    stride = (width * 3 + 3) & ~3
                    rows = b"".join(
                        bytes(info.data[y * stride:y * stride + width * 3])
                        for y in range(height))
                finally:
                    buf.unmap(info)
                path = os.path.join(self.args.output_dir, f"frame-{self.frames:04d}.ppm")
                with open(path, "wb") as f:
                    f.write(b"P6\n%d %d\n255\n" % (width, height) + rows)
        self.frames += 1
        return Gst.FlowReturn.OK

    def on_message(self, bus, msg):
        if msg.type == Gst.MessageType.ELEMENT and msg.has_name("vdit-progress"):
            s = msg.get_structure()
            step, steps = s.get_value("step"), s.get_value("steps")
            done = 30 * step // steps if steps else 0
            print(f"\r{s.get_value('stage'):<11} [{'#' * done:<30}] {step:3d}/{steps:<3d}"
                  f"  frames {s.get_value('frame')}/{s.get_value('frames')}",
                  end="", flush=True)
        elif msg.type == Gst.MessageType.PROGRESS:
            _, _, text = msg.parse_progress()
            print(text)
        elif msg.type == Gst.MessageType.ERROR:
            err, debug = msg.parse_error()
            print(f"\nerror: {err.message}", file=sys.stderr)
            if debug:
                print(f"debug: {debug}", file=sys.stderr)
            self.failed = True
            self.loop.quit()
        elif msg.type == Gst.MessageType.EOS:
            print()
            self.loop.quit()

    def run(self):
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            self.failed = True
        self.loop.run()  # a failed start has posted its error: the loop ends on it
        device = self.src.get_property("device-used")
        expected = self.src.get_property("frames")
        self.pipeline.set_state(Gst.State.NULL)
        if self.failed:
            return 1
        print(f"{self.frames} frames on {device}")
        return 0 if expected == 0 or self.frames == expected else 1


def main():
    parser = argparse.ArgumentParser(description="Generate a video with vditsrc.")
    parser.add_argument("--prompt", "-p", default="a red circle moving left")
    parser.add_argument("--model", "-m", help="model directory")
    parser.add_argument("--frames", "-n", type=int, default=0,
                        help="frames (0 = the model's default)")
    parser.add_argument("--steps", "-s", type=int, default=0,
                        help="sampling steps (0 = the model's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", "-d", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--output-dir", "-o", help="write each frame there as PPM")
    args = parser.parse_args()

    Gst.init(None)
    if Gst.ElementFactory.find("vditsrc") is None:
        print("vdit_app: vditsrc not found; set GST_PLUGIN_PATH to the build's gst/ "
              "directory or install vdit", file=sys.stderr)
        return 1
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
    return App(args).run()


if __name__ == "__main__":
    sys.exit(main())
