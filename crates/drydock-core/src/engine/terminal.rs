//! What a person would have seen on a terminal, line by line, from the raw
//! bytes a program wrote.
//!
//! Escape sequences are parsed by `vte` (the parser of the Alacritty
//! terminal, a state machine after Paul Williams' DEC ANSI parser), so every
//! sequence is recognised and consumed whole: CSI (`ESC [ … final`), OSC
//! (`ESC ] …` ending in BEL or ST: window titles, `ESC ] 8 ;; url ST`
//! hyperlinks, whose text stays), DCS, charset selection (`ESC ( B`, which
//! `tput sgr0` prints) and the rest. On top of the parser, drydock keeps one
//! line of cells and a cursor, as a terminal does for the line being
//! written: `\r` returns to the start (a progress bar's last state is what
//! stays), backspace moves back, `ESC [ K` erases, `ESC [ n G`/`C`/`D` move
//! the cursor, `ESC [ n X`/`P`/`@` erase, delete and insert characters.
//! Colours and other attributes are dropped. Movements to other lines
//! cannot be replayed in a stream of lines and are ignored.
//!
//! Invalid UTF-8 becomes U+FFFD, also when a sequence is split between two
//! chunks. Memory is bounded: a line is at most [`MAX_LINE`] characters (a
//! longer one is emitted in pieces, as a terminal wraps), and the parser
//! keeps at most 1 KiB of an unterminated OSC string (the crate is used
//! without its `std` feature, whose buffer would grow without bound).

use vte::{Params, Parser, Perform};

/// Longest line kept whole, in characters; a longer one is emitted in pieces.
pub const MAX_LINE: usize = 64 * 1024;

/// Reassembles lines from chunks that are not line-aligned and renders them
/// as a terminal would (see the module documentation).
#[derive(Default)]
pub struct LineBuffer {
    parser: Parser,
    line: Line,
}

impl std::fmt::Debug for LineBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineBuffer")
            .field("pending", &self.line.cells.len())
            .finish()
    }
}

impl LineBuffer {
    /// Adds a chunk of raw output (bytes, or text) and returns the lines it
    /// completed, rendered, without their line end.
    pub fn push(&mut self, chunk: impl AsRef<[u8]>) -> Vec<String> {
        self.parser.advance(&mut self.line, chunk.as_ref());
        std::mem::take(&mut self.line.done)
    }

    /// Returns what remains as a last line, if anything was written to it.
    /// An escape sequence cut off by the end is dropped (a terminal would
    /// not show it either); a cut UTF-8 sequence becomes U+FFFD.
    pub fn finish(&mut self) -> Vec<String> {
        // CAN (0x18) aborts any escape sequence in progress and ends a cut
        // UTF-8 sequence (as U+FFFD); it is not shown itself.
        self.parser.advance(&mut self.line, &[0x18]);
        self.parser = Parser::default();
        self.line.end_line(true);
        std::mem::take(&mut self.line.done)
    }
}

/// Every line of a complete output, rendered (see [`LineBuffer`]).
pub fn render_lines(bytes: impl AsRef<[u8]>) -> Vec<String> {
    let mut buffer = LineBuffer::default();
    let mut lines = buffer.push(bytes);
    lines.extend(buffer.finish());
    lines
}

/// Text as a terminal would show it, lines joined with `\n`: escape
/// sequences consumed, overwrites applied (see [`LineBuffer`]).
pub fn strip_ansi(text: &str) -> String {
    render_lines(text).join("\n")
}

/// The line being written, its cursor and the lines completed since the
/// last [`LineBuffer::push`].
#[derive(Default)]
struct Line {
    cells: Vec<char>,
    col: usize,
    saved_col: usize,
    /// Something was written or erased since the last line end.
    touched: bool,
    done: Vec<String>,
}

impl Line {
    fn end_line(&mut self, only_if_touched: bool) {
        if only_if_touched && !self.touched && self.cells.is_empty() {
            return;
        }
        let text: String = self.cells.iter().collect();
        self.done.push(text);
        self.cells.clear();
        self.col = 0;
        self.touched = false;
    }

    fn put(&mut self, c: char) {
        if self.col >= MAX_LINE {
            // Wrap, as a terminal does at its last column.
            self.end_line(false);
        }
        if self.col < self.cells.len() {
            self.cells[self.col] = c;
        } else {
            self.cells.resize(self.col, ' ');
            self.cells.push(c);
        }
        self.col += 1;
        self.touched = true;
    }

    fn move_to(&mut self, col: usize) {
        self.col = col.min(MAX_LINE);
    }
}

/// The first parameter of a CSI sequence, with its default.
fn param(params: &Params, default: usize) -> usize {
    params
        .iter()
        .next()
        .and_then(|p| p.first().copied())
        .filter(|&n| n != 0)
        .map_or(default, usize::from)
}

impl Perform for Line {
    fn print(&mut self, c: char) {
        // C1 controls written as UTF-8 are not text.
        if !c.is_control() {
            self.put(c);
        }
    }

    fn execute(&mut self, byte: u8) {
        match byte {
            // LF, VT, FF: the next line (output without a tty has no
            // carriage return before them; the column resets as with one).
            b'\n' | 0x0b | 0x0c => self.end_line(false),
            b'\r' => self.col = 0,
            0x08 => self.col = self.col.saturating_sub(1),
            // Kept as a character: logs are copied and searched.
            b'\t' => self.put('\t'),
            _ => {}
        }
    }

    fn csi_dispatch(&mut self, params: &Params, intermediates: &[u8], _ignore: bool, action: char) {
        if !intermediates.is_empty() {
            return; // private modes (`ESC [ ? 25 l`) and the like
        }
        let n = param(params, 1);
        match action {
            // Erase in line: to the end, to the start, all.
            'K' => {
                match param(params, 0) {
                    0 => self.cells.truncate(self.col),
                    1 => {
                        let end = (self.col + 1).min(self.cells.len());
                        self.cells[..end].fill(' ');
                    }
                    _ => self.cells.clear(),
                }
                self.touched = true;
            }
            'G' | '`' => self.move_to(n - 1),
            'C' | 'a' => self.move_to(self.col.saturating_add(n)),
            'D' => self.col = self.col.saturating_sub(n),
            // Cursor position (row;col): rows cannot be replayed, columns can.
            'H' | 'f' => {
                let col = params
                    .iter()
                    .nth(1)
                    .and_then(|p| p.first().copied())
                    .filter(|&c| c != 0)
                    .map_or(1, usize::from);
                self.move_to(col - 1);
            }
            // Next line / previous line: to the start of a line.
            'E' => self.end_line(false),
            'F' => self.col = 0,
            // Erase / delete / insert characters at the cursor.
            'X' => {
                let end = self.col.saturating_add(n).min(self.cells.len());
                if self.col < end {
                    self.cells[self.col..end].fill(' ');
                }
            }
            'P' => {
                let end = self.col.saturating_add(n).min(self.cells.len());
                if self.col < end {
                    self.cells.drain(self.col..end);
                }
            }
            '@' if self.col < self.cells.len() => {
                let room = MAX_LINE.saturating_sub(self.cells.len());
                let n = n.min(room);
                self.cells
                    .splice(self.col..self.col, std::iter::repeat_n(' ', n));
            }
            _ => {}
        }
    }

    fn esc_dispatch(&mut self, intermediates: &[u8], _ignore: bool, byte: u8) {
        if !intermediates.is_empty() {
            return; // charset selection (`ESC ( B`) and the like
        }
        match byte {
            b'E' => self.end_line(false), // NEL
            b'7' => self.saved_col = self.col,
            b'8' => self.move_to(self.saved_col),
            _ => {}
        }
    }

    // OSC (titles, hyperlinks, clipboard…) and DCS strings: consumed, not shown.
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(bytes: &[u8]) -> Vec<String> {
        render_lines(bytes)
    }

    #[test]
    fn what_people_print_is_what_they_saw() {
        let cases: &[(&[u8], &[&str])] = &[
            // Colours, and `tput sgr0` (`ESC ( B ESC [ m`).
            (b"\x1b[1;31mred\x1b(B\x1b[m plain\n", &["red plain"]),
            // Hyperlink, ST-terminated; the link text stays.
            (
                b"see \x1b]8;;http://example.com/\x1b\\the docs\x1b]8;;\x1b\\ now\n",
                &["see the docs now"],
            ),
            // Window title ending in BEL, and one ending in ST.
            (b"\x1b]0;title\x07ok\n\x1b]2;t2\x1b\\ok2\n", &["ok", "ok2"]),
            // Carriage-return overwrites: a progress bar's last state.
            (b"10%\r50%\r100%\n", &["100%"]),
            (b"downloading... \rdone          \n", &["done           "]),
            // Erase to the end of line after a return.
            (b"aaaaaa\r\x1b[Kbb\n", &["bb"]),
            (b"abc\x08\x08X\n", &["aXc"]),
            (b"CRLF line\r\n", &["CRLF line"]),
            (b"col\x1b[10GX\n", &["col      X"]),
            (b"abcdef\x1b[3G\x1b[2P\n", &["abef"]),
            (b"abcdef\x1b[2G\x1b[2X\n", &["a  def"]),
            (b"\x1b[?25lhidden cursor\x1b[?25h\n", &["hidden cursor"]),
            (b"bell\x07 nul\0 end\n", &["bell nul end"]),
            (b"tab\there\n", &["tab\there"]),
            (b"one\ntwo\n\nfour", &["one", "two", "", "four"]),
            (b"\xffbad\xc3(\n", &["\u{fffd}bad\u{fffd}("]),
            // DCS strings are consumed.
            (b"\x1bP1$r0m\x1b\\after\n", &["after"]),
            // C1 CSI written as UTF-8 is not shown as text.
            ("x\u{9b}y\n".as_bytes(), &["xy"]),
        ];
        for (input, want) in cases {
            assert_eq!(render(input), *want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn lines_and_sequences_are_reassembled_across_chunks() {
        let mut buffer = LineBuffer::default();
        assert!(buffer.push("Step 1/2 : FR").is_empty());
        assert_eq!(
            buffer.push("OM x\n\u{1b}[91mred\u{1b}[0m\r\nta"),
            vec!["Step 1/2 : FROM x", "red"]
        );
        assert_eq!(buffer.finish(), vec!["ta"]);
        assert!(buffer.finish().is_empty());

        // Split inside an escape sequence, an OSC and a UTF-8 character.
        let whole = "\x1b[31mé\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ \u{1f680}\n".as_bytes();
        for cut in 0..whole.len() {
            let mut buffer = LineBuffer::default();
            let mut lines = buffer.push(&whole[..cut]);
            lines.extend(buffer.push(&whole[cut..]));
            lines.extend(buffer.finish());
            assert_eq!(lines, vec!["élink \u{1f680}"], "cut at {cut}");
        }
    }

    #[test]
    fn memory_is_bounded() {
        let mut buffer = LineBuffer::default();
        // A newline-free flood is emitted in pieces.
        let lines = buffer.push(vec![b'x'; MAX_LINE * 2 + 10]);
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.len() == MAX_LINE));
        assert_eq!(buffer.finish(), vec!["x".repeat(10)]);
        // Cursor moves far right are capped (vte caps parameters at 65535 too).
        let lines = render(b"\x1b[999999999Gx\x1b[65535C\x1b[65535Cy\n");
        assert!(
            lines.iter().all(|l| l.chars().count() <= MAX_LINE),
            "{:?}",
            lines.len()
        );
        // An OSC that never ends does not grow.
        let mut buffer = LineBuffer::default();
        buffer.push(b"\x1b]0;");
        for _ in 0..64 {
            assert!(buffer.push(vec![b'a'; 1 << 20]).is_empty());
        }
        assert!(buffer.finish().is_empty());
    }

    #[test]
    fn strip_ansi_renders_text() {
        assert_eq!(
            strip_ansi("\x1b[31merror\x1b[0m: x\r\nnext"),
            "error: x\nnext"
        );
        assert_eq!(strip_ansi(""), "");
        let mut buffer = LineBuffer::default();
        assert!(buffer.push(b"ab\xc3").is_empty());
        assert_eq!(buffer.finish(), vec!["ab\u{fffd}"]);
        let mut buffer = LineBuffer::default();
        assert!(buffer.push(b"ab\x1b[3").is_empty());
        assert_eq!(buffer.finish(), vec!["ab"]);
    }
}
