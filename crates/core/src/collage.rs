//! Collages and single photos for mailings: pure image computation (bytes in, JPEG bytes out;
//! no I/O, no threads, no clock), so the server and the Worker (wasm32) run the same code.
//!
//! Inputs are the photo files as the user sent them (`&[u8]`, JPEG or PNG); the output is a
//! baseline JPEG whose long side is at most [`CollageOptions::max_side`] and whose size is at
//! most [`CollageOptions::max_bytes`].
//!
//! # Layout ([`plan_layout`])
//! Photos keep the order they were sent in and are laid out in *justified rows*: every photo
//! in a row gets the same height, and the row's height is whatever makes the row exactly fill
//! the canvas width. A photo's cell then has (nearly) the photo's own aspect ratio, so portrait
//! and landscape photos can share a row without being cut much: a portrait is simply narrower.
//! 1. Each photo's aspect ratio (width / height, after EXIF orientation) is clamped to
//!    [1:2, 2:1], so panoramas and long screenshots get a cell that is cropped rather than a
//!    sliver.
//! 2. The photos are split into consecutive rows by dynamic programming, minimising
//!    `Σ ln(h_row / h*)²`, where `h_row` is a row's height on a canvas of width 1 and
//!    `h* = 1 / √(Σ aspect)` is the height every row would have if all photos shared one height
//!    on a *square* canvas. So rows come out of similar height and the canvas near square:
//!    two landscapes are stacked, two portraits sit side by side, three landscapes make a row
//!    of one and a row of two, ten landscapes make rows of 3, 3 and 4.
//! 3. Pixels: the canvas long side is `max_side`, or smaller when the photos are small (no
//!    pointless upscaling: the canvas is at most the size at which the sharpest photo is shown
//!    1:1, but at least 640 px). Photos are separated by `gap` pixels of `background`; there is
//!    no outer border. Row heights and cell edges are rounded down/to nearest so that every cell
//!    lies inside the canvas and the gaps are exact.
//!
//! # Rendering ([`build_collage`])
//! Photos are decoded one at a time (peak memory: the canvas plus one decoded photo). Each is
//! scaled uniformly so it covers its cell and cropped centred (never stretched). The crop and the
//! scaling are done in the photo's stored orientation and only the small result is rotated or
//! flipped per its EXIF orientation, which saves a full-size copy. Downscaling first averages
//! `k×k` pixel blocks (integer `k`, cheap) while the photo is still at least twice the cell, then
//! finishes with a triangle filter (our own fixed-point resampler, see `resize_exact`).
//!
//! # Size bound
//! The canvas is encoded as a baseline 4:2:0 JPEG at the highest of [`QUALITIES`] (85 down to
//! 46) that fits `max_bytes`: 85 first (it usually fits), then the lowest, then bisection. If
//! even the lowest does not fit, the whole collage is planned and drawn again smaller (the long
//! side scaled by √(max_bytes / size) with 10% to spare, at least 20% shorter), and so on.
//! Photos on their own ([`normalise_photo`]) go through the same steps. Re-encoding also drops
//! every metadata block (EXIF with GPS position, camera serials), which should not travel to
//! WhatsApp groups anyway.

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage, RgbaImage};
use std::fmt;
use std::io::Cursor;
use std::ops::Range;

/// At most this many photos go into one collage (and one mailing).
pub const MAX_PHOTOS: usize = 10;
/// Photos with more pixels than this are refused before decoding (about 120 MB as RGB: a
/// decompression bomb would otherwise take the Worker's 128 MB at once).
pub const MAX_SOURCE_PIXELS: u64 = 40_000_000;
/// JPEG qualities tried in turn until the output fits `max_bytes`.
pub const QUALITIES: [u8; 6] = [85, 78, 70, 62, 54, 46];

const MIN_ASPECT: f64 = 0.5;
const MAX_ASPECT: f64 = 2.0;
/// Small photos still make a collage at least this big (long side), unless `max_side` is smaller.
const MIN_LONG_SIDE: u32 = 640;
/// When the lowest quality is still too big, the long side shrinks by this factor...
const SHRINK_STEP: f64 = 0.8;
/// ...but not below this: an image that does not fit then is refused ([`CollageError::TooBig`]).
const MIN_SHRUNK_SIDE: u32 = 160;

/// How a collage (or a single photo) is sized and drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollageOptions {
    /// Longest side of the output, in pixels.
    pub max_side: u32,
    /// Largest output JPEG, in bytes.
    pub max_bytes: usize,
    /// Pixels between neighbouring photos.
    pub gap: u32,
    /// Colour of the gaps (and behind transparent PNG pixels), RGB.
    pub background: [u8; 3],
}

impl Default for CollageOptions {
    fn default() -> Self {
        CollageOptions {
            max_side: 1600,
            max_bytes: 1_000_000,
            gap: 6,
            background: [255, 255, 255],
        }
    }
}

/// Where one photo went: a rectangle of the canvas, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    /// Index of the photo in the input slice.
    pub photo: usize,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// A planned collage: canvas size and one cell per photo, in input order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub width: u32,
    pub height: u32,
    pub cells: Vec<Cell>,
}

/// A finished collage.
#[derive(Clone, PartialEq, Eq)]
pub struct Collage {
    /// Baseline JPEG, at most `max_bytes`.
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// One cell per photo, in input order.
    pub cells: Vec<Cell>,
    /// The JPEG quality the size bound allowed.
    pub quality: u8,
}

impl fmt::Debug for Collage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collage")
            .field("jpeg", &format_args!("{} bytes", self.jpeg.len()))
            .field("width", &self.width)
            .field("height", &self.height)
            .field("cells", &self.cells)
            .field("quality", &self.quality)
            .finish()
    }
}

/// The image formats a photo may arrive in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhotoFormat {
    Jpeg,
    Png,
}

/// What [`probe`] learns from a photo's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    /// Width as displayed, i.e. after the EXIF orientation.
    pub width: u32,
    /// Height as displayed, i.e. after the EXIF orientation.
    pub height: u32,
    pub format: PhotoFormat,
}

/// Why a collage or a photo could not be made. `index` is the photo's 0-based position in the
/// input; the messages count from 1 ("photo 1") as a user would.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollageError {
    #[error("no photos to make a collage from")]
    NoPhotos,
    #[error("too many photos: {0} (at most {MAX_PHOTOS})")]
    TooMany(usize),
    #[error("photo {} is not a JPEG or PNG image", .index + 1)]
    UnsupportedFormat { index: usize },
    #[error("photo {} could not be read: {reason}", .index + 1)]
    Decode { index: usize, reason: String },
    #[error("photo {} is too large: {width}×{height} pixels", .index + 1)]
    TooLarge {
        index: usize,
        width: u32,
        height: u32,
    },
    #[error("the image does not fit into {max_bytes} bytes even at {MIN_SHRUNK_SIDE} px")]
    TooBig { max_bytes: usize },
    #[error("JPEG encoding failed: {0}")]
    Encode(String),
}

impl CollageError {
    /// The same error about the photo at `index` (single-photo functions report index 0).
    pub fn at_index(self, index: usize) -> Self {
        match self {
            CollageError::UnsupportedFormat { .. } => CollageError::UnsupportedFormat { index },
            CollageError::Decode { reason, .. } => CollageError::Decode { index, reason },
            CollageError::TooLarge { width, height, .. } => CollageError::TooLarge {
                index,
                width,
                height,
            },
            other => other,
        }
    }
}

/// Reads a photo's headers only: its displayed size (EXIF orientation applied) and format.
/// Refuses what [`build_collage`] would refuse: not JPEG/PNG, unreadable, too many pixels.
pub fn probe(bytes: &[u8]) -> Result<ImageInfo, CollageError> {
    let (mut decoder, format) = open(bytes, 0)?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, 0)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let (width, height) = if swaps_axes(orientation) {
        (height, width)
    } else {
        (width, height)
    };
    Ok(ImageInfo {
        width,
        height,
        format,
    })
}

/// Re-encodes one photo as a JPEG with its EXIF orientation applied, the long side at most
/// `max_side` (never upscaled) and at most `max_bytes`. Metadata is dropped.
pub fn normalise_photo(
    bytes: &[u8],
    max_side: u32,
    max_bytes: usize,
) -> Result<Vec<u8>, CollageError> {
    let source = decode(bytes, 0, [255, 255, 255])?;
    let (width, height) = source.displayed_size();
    let mut side = max_side.max(1);
    loop {
        let (w, h) = fit_within(width, height, side);
        let image = source.render(w, h);
        match encode_within(&image, max_bytes)? {
            Fit::Fits { jpeg, .. } => return Ok(jpeg),
            Fit::TooBig { smallest } => side = shrink(w.max(h), smallest, max_bytes)?,
        }
    }
}

/// Builds the collage of `photos` (each the bytes of a JPEG or PNG file, at most
/// [`MAX_PHOTOS`]) as described in the module documentation.
pub fn build_collage(photos: &[&[u8]], opts: &CollageOptions) -> Result<Collage, CollageError> {
    if photos.is_empty() {
        return Err(CollageError::NoPhotos);
    }
    if photos.len() > MAX_PHOTOS {
        return Err(CollageError::TooMany(photos.len()));
    }
    let dims = photos
        .iter()
        .enumerate()
        .map(|(index, bytes)| {
            let info = probe(bytes).map_err(|e| e.at_index(index))?;
            Ok((info.width, info.height))
        })
        .collect::<Result<Vec<_>, CollageError>>()?;
    let mut planned = opts.clone();
    loop {
        let layout = plan_layout(&dims, &planned);
        let canvas = draw(photos, &layout, opts.background)?;
        match encode_within(&canvas, opts.max_bytes)? {
            Fit::Fits { jpeg, quality } => {
                return Ok(Collage {
                    jpeg,
                    width: layout.width,
                    height: layout.height,
                    cells: layout.cells,
                    quality,
                })
            }
            Fit::TooBig { smallest } => {
                let long = layout.width.max(layout.height);
                planned.max_side = shrink(long, smallest, opts.max_bytes)?;
            }
        }
    }
}

/// Plans the collage of photos whose displayed sizes are `dims` (see the module documentation).
/// Pure geometry: no image is touched. An empty input gives an empty 0×0 layout.
pub fn plan_layout(dims: &[(u32, u32)], opts: &CollageOptions) -> Layout {
    if dims.is_empty() {
        return Layout {
            width: 0,
            height: 0,
            cells: Vec::new(),
        };
    }
    let aspects: Vec<f64> = dims
        .iter()
        .map(|&(w, h)| (f64::from(w.max(1)) / f64::from(h.max(1))).clamp(MIN_ASPECT, MAX_ASPECT))
        .collect();
    let rows = split_rows(&aspects);
    let long_side = canvas_long_side(dims, &aspects, &rows, opts.max_side);
    place(&aspects, &rows, long_side, opts.gap)
}

/// Splits the photos into consecutive rows, minimising `Σ ln(h_row / h*)²` (module docs).
fn split_rows(aspects: &[f64]) -> Vec<Range<usize>> {
    let n = aspects.len();
    let target = 1.0 / aspects.iter().sum::<f64>().sqrt();
    // best[end] = (cost, start of the last row) of the best split of photos 0..end.
    let mut best: Vec<(f64, usize)> = vec![(f64::INFINITY, 0); n + 1];
    best[0] = (0.0, 0);
    for end in 1..=n {
        for start in 0..end {
            let height = 1.0 / aspects[start..end].iter().sum::<f64>();
            let cost = best[start].0 + (height / target).ln().powi(2);
            if cost < best[end].0 {
                best[end] = (cost, start);
            }
        }
    }
    let mut rows = Vec::new();
    let mut end = n;
    while end > 0 {
        let start = best[end].1;
        rows.push(start..end);
        end = start;
    }
    rows.reverse();
    rows
}

/// The canvas long side: `max_side`, less when even the sharpest photo would be upscaled there,
/// but at least [`MIN_LONG_SIDE`] (or `max_side` if that is smaller).
fn canvas_long_side(
    dims: &[(u32, u32)],
    aspects: &[f64],
    rows: &[Range<usize>],
    max_side: u32,
) -> u32 {
    // On a canvas of width 1 (gaps ignored): row heights 1/Σaspect, cell widths aspect·height.
    let mut canvas_height = 0.0;
    let mut natural_width: f64 = 0.0;
    for row in rows {
        let height = 1.0 / aspects[row.clone()].iter().sum::<f64>();
        canvas_height += height;
        for i in row.clone() {
            let (w, h) = (f64::from(dims[i].0.max(1)), f64::from(dims[i].1.max(1)));
            // The photo is shown 1:1 when the canvas is this wide (it is scaled to cover).
            natural_width = natural_width.max((w / (aspects[i] * height)).min(h / height));
        }
    }
    let natural_long = natural_width * f64::max(1.0, canvas_height);
    let floor = MIN_LONG_SIDE.min(max_side);
    (natural_long as u32).clamp(floor, max_side.max(1))
}

/// Turns rows into pixel cells on a canvas whose long side is at most `long_side`.
fn place(aspects: &[f64], rows: &[Range<usize>], long_side: u32, gap: u32) -> Layout {
    let long = f64::from(long_side);
    let g = f64::from(gap);
    let sums: Vec<f64> = rows
        .iter()
        .map(|r| aspects[r.clone()].iter().sum())
        .collect();
    // Canvas height for width w: Σ (w − gaps in row) / Σaspect + gaps between rows (linear in w).
    let per_width: f64 = sums.iter().map(|s| 1.0 / s).sum();
    let constant: f64 = g * (rows.len() - 1) as f64
        - rows
            .iter()
            .zip(&sums)
            .map(|(r, s)| g * (r.len() - 1) as f64 / s)
            .sum::<f64>();
    let mut width = long;
    if width * per_width + constant > long {
        width = (long - constant) / per_width;
    }
    let width = (width.floor() as u32).max(1);

    let mut cells = Vec::with_capacity(aspects.len());
    let mut y = 0;
    for (row, sum) in rows.iter().zip(&sums) {
        let count = row.len() as u32;
        let room = width.saturating_sub(gap * (count - 1)).max(count);
        let height = ((f64::from(room) / sum).floor() as u32).max(1);
        let mut covered = 0.0;
        let mut left_edge = 0;
        for (k, i) in row.clone().enumerate() {
            covered += aspects[i];
            let right_edge = (f64::from(room) * covered / sum).round() as u32;
            cells.push(Cell {
                photo: i,
                x: left_edge + gap * k as u32,
                y,
                width: right_edge.saturating_sub(left_edge).max(1),
                height,
            });
            left_edge = right_edge;
        }
        y += height + gap;
    }
    Layout {
        width,
        height: y - gap,
        cells,
    }
}

/// Draws every photo into its cell on a canvas of the background colour.
fn draw(photos: &[&[u8]], layout: &Layout, background: [u8; 3]) -> Result<RgbImage, CollageError> {
    let mut canvas = RgbImage::from_pixel(layout.width, layout.height, image::Rgb(background));
    for cell in &layout.cells {
        let source = decode(photos[cell.photo], cell.photo, background)?;
        let tile = source.render(cell.width, cell.height);
        paste(&mut canvas, &tile, cell.x, cell.y);
    }
    Ok(canvas)
}

/// A decoded photo in its stored orientation, with the EXIF orientation still to apply.
struct Source {
    pixels: RgbImage,
    orientation: Orientation,
}

impl Source {
    fn displayed_size(&self) -> (u32, u32) {
        let (w, h) = self.pixels.dimensions();
        if swaps_axes(self.orientation) {
            (h, w)
        } else {
            (w, h)
        }
    }

    /// The photo scaled to cover `width`×`height` (displayed), cropped centred, oriented.
    fn render(&self, width: u32, height: u32) -> RgbImage {
        // Centring is symmetric under rotations and flips, so crop and scale in stored
        // orientation and rotate only the small result.
        let swapped = swaps_axes(self.orientation);
        let (w, h) = if swapped {
            (height, width)
        } else {
            (width, height)
        };
        let scaled = cover(&self.pixels, w, h);
        if self.orientation == Orientation::NoTransforms {
            return scaled;
        }
        let mut image = DynamicImage::ImageRgb8(scaled);
        image.apply_orientation(self.orientation);
        image.into_rgb8()
    }
}

/// `image` scaled uniformly to cover `width`×`height` and cropped centred to exactly that.
pub(crate) fn cover(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (sw, sh) = image.dimensions();
    let (crop_w, crop_h) = cover_crop(sw, sh, width, height);
    let factor = (crop_w / width).min(crop_h / height);
    if factor >= 2 {
        // Average factor×factor blocks first (cheap), keeping the crop centred.
        let (bw, bh) = (crop_w / factor, crop_h / factor);
        let x = (sw - bw * factor) / 2;
        let y = (sh - bh * factor) / 2;
        let reduced = box_reduce(image, x, y, bw, bh, factor);
        return resize_exact(reduced, width, height);
    }
    let x = (sw - crop_w) / 2;
    let y = (sh - crop_h) / 2;
    resize_exact(crop(image, x, y, crop_w, crop_h), width, height)
}

/// The size of the centred part of a `sw`×`sh` image that, scaled uniformly, exactly covers
/// `width`×`height` (one side is the whole image, the other is cropped).
pub(crate) fn cover_crop(sw: u32, sh: u32, width: u32, height: u32) -> (u32, u32) {
    let scale = f64::max(
        f64::from(width) / f64::from(sw),
        f64::from(height) / f64::from(sh),
    );
    let crop_w = ((f64::from(width) / scale).round() as u32).clamp(1, sw);
    let crop_h = ((f64::from(height) / scale).round() as u32).clamp(1, sh);
    (crop_w, crop_h)
}

/// Resizes to exactly `width`×`height` with a triangle filter: bilinear when enlarging, and
/// when shrinking a tent as wide as the scale (every source pixel counts). Separable, in fixed
/// point (weights sum to 2^14), with an 8-bit intermediate, like Pillow's resampler; several
/// times faster than `image::imageops::resize`, which works in `f32` through generic pixels.
fn resize_exact(image: RgbImage, width: u32, height: u32) -> RgbImage {
    if image.dimensions() == (width, height) {
        return image;
    }
    let (sw, sh) = (image.width() as usize, image.height() as usize);
    let (w, h) = (width as usize, height as usize);
    // Horizontal pass: each source row to `w` pixels. The taps are laid out flat with one
    // length for all, so the inner loop has a fixed trip count.
    let (starts, weights, n) = flat_taps(sw, w);
    let mut narrow = vec![0u8; w * sh * 3];
    for (src, out) in image
        .as_raw()
        .chunks_exact(sw * 3)
        .zip(narrow.chunks_exact_mut(w * 3))
    {
        for ((px, &start), tap) in out
            .chunks_exact_mut(3)
            .zip(&starts)
            .zip(weights.chunks_exact(n))
        {
            let (mut r, mut g, mut b) = (HALF, HALF, HALF);
            for (p, &weight) in src[start * 3..(start + n) * 3].chunks_exact(3).zip(tap) {
                r += i32::from(p[0]) * weight;
                g += i32::from(p[1]) * weight;
                b += i32::from(p[2]) * weight;
            }
            px[0] = (r >> SHIFT).clamp(0, 255) as u8;
            px[1] = (g >> SHIFT).clamp(0, 255) as u8;
            px[2] = (b >> SHIFT).clamp(0, 255) as u8;
        }
    }
    // Vertical pass: whole rows at a time, so memory is read in order.
    let mut out = vec![0u8; w * h * 3];
    let mut acc = vec![0i32; w * 3];
    for (out_row, tap) in out.chunks_exact_mut(w * 3).zip(&taps(sh, h)) {
        acc.fill(HALF);
        for (k, &weight) in tap.weights.iter().enumerate() {
            let row = &narrow[(tap.start + k) * w * 3..][..w * 3];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += i32::from(v) * weight;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = (a >> SHIFT).clamp(0, 255) as u8;
        }
    }
    RgbImage::from_raw(width, height, out).expect("buffer sized for the image")
}

const SHIFT: u32 = 14;
const HALF: i32 = 1 << (SHIFT - 1);

/// The source pixels `start..start + weights.len()` that make one output pixel.
struct Taps {
    start: usize,
    weights: Vec<i32>,
}

/// [`taps`] as one flat table: a start per output pixel and `n` weights each (zero-padded, the
/// start moved left where needed so that `start + n` stays inside the source).
fn flat_taps(src: usize, dst: usize) -> (Vec<usize>, Vec<i32>, usize) {
    let taps = taps(src, dst);
    let n = taps
        .iter()
        .map(|t| t.weights.len())
        .max()
        .unwrap_or(1)
        .min(src);
    let mut starts = Vec::with_capacity(dst);
    let mut weights = vec![0; dst * n];
    for (tap, row) in taps.iter().zip(weights.chunks_exact_mut(n)) {
        let start = tap.start.min(src - n);
        let offset = tap.start - start;
        row[offset..offset + tap.weights.len()].copy_from_slice(&tap.weights);
        starts.push(start);
    }
    (starts, weights, n)
}

/// Triangle-filter taps for resampling `src` pixels to `dst` along one axis.
fn taps(src: usize, dst: usize) -> Vec<Taps> {
    let scale = src as f64 / dst as f64;
    let radius = scale.max(1.0);
    (0..dst)
        .map(|i| {
            let centre = (i as f64 + 0.5) * scale;
            let start = ((centre - radius).floor().max(0.0)) as usize;
            let end = ((centre + radius).ceil() as usize).min(src).max(start + 1);
            let raw: Vec<f64> = (start..end)
                .map(|j| (1.0 - ((j as f64 + 0.5 - centre) / radius).abs()).max(0.0))
                .collect();
            let total: f64 = raw.iter().sum();
            let one = f64::from(1 << SHIFT);
            let mut weights: Vec<i32> = if total > 0.0 {
                raw.iter()
                    .map(|r| (r / total * one).round() as i32)
                    .collect()
            } else {
                vec![0; raw.len()]
            };
            // Put the rounding remainder on the heaviest tap so the weights sum to exactly 1.
            let remainder = (1 << SHIFT) - weights.iter().sum::<i32>();
            let heaviest = (0..weights.len()).max_by_key(|&k| weights[k]).unwrap_or(0);
            weights[heaviest] += remainder;
            Taps { start, weights }
        })
        .collect()
}

/// A copy of the `width`×`height` rectangle of `image` at (`x`, `y`).
fn crop(image: &RgbImage, x: u32, y: u32, width: u32, height: u32) -> RgbImage {
    let stride = image.width() as usize * 3;
    let row_len = width as usize * 3;
    let mut out = Vec::with_capacity(row_len * height as usize);
    for row in image
        .as_raw()
        .chunks_exact(stride)
        .skip(y as usize)
        .take(height as usize)
    {
        let start = x as usize * 3;
        out.extend_from_slice(&row[start..start + row_len]);
    }
    RgbImage::from_raw(width, height, out).expect("buffer sized for the image")
}

/// Averages `factor`×`factor` blocks of `image`, starting at (`x`, `y`), into a
/// `width`×`height` image. Rows are summed first (a plain loop over bytes, which the compiler
/// vectorises), then each block's columns.
fn box_reduce(image: &RgbImage, x: u32, y: u32, width: u32, height: u32, factor: u32) -> RgbImage {
    let stride = image.width() as usize * 3;
    let src: &[u8] = image.as_raw();
    let f = factor as usize;
    let span = width as usize * f * 3;
    let area = factor * factor;
    // Divides by `area` as a multiplication by its fixed-point reciprocal: exact for blocks
    // smaller than 64×64, at most one level high beyond.
    let reciprocal = (1u64 << 32) / u64::from(area) + 1;
    let mut out = Vec::with_capacity(width as usize * height as usize * 3);
    let mut column_sums = vec![0u32; span];
    for oy in 0..height as usize {
        column_sums.fill(0);
        for dy in 0..f {
            let start = (y as usize + oy * f + dy) * stride + x as usize * 3;
            for (sum, &v) in column_sums.iter_mut().zip(&src[start..start + span]) {
                *sum += u32::from(v);
            }
        }
        for block in column_sums.chunks_exact(f * 3) {
            let mut rgb = [area / 2; 3];
            for px in block.chunks_exact(3) {
                rgb[0] += px[0];
                rgb[1] += px[1];
                rgb[2] += px[2];
            }
            out.extend(rgb.map(|c| ((u64::from(c) * reciprocal) >> 32) as u8));
        }
    }
    RgbImage::from_raw(width, height, out).expect("buffer sized for the image")
}

/// Copies `tile` onto `canvas` with its top-left corner at (`x`, `y`), clipped to the canvas.
fn paste(canvas: &mut RgbImage, tile: &RgbImage, x: u32, y: u32) {
    let canvas_w = canvas.width() as usize;
    let canvas_h = canvas.height() as usize;
    let (x, y) = (x as usize, y as usize);
    let copy_w = (tile.width() as usize).min(canvas_w.saturating_sub(x));
    let tile_stride = tile.width() as usize * 3;
    let dst: &mut [u8] = canvas;
    for (row, src_row) in tile.as_raw().chunks_exact(tile_stride).enumerate() {
        if y + row >= canvas_h {
            break;
        }
        let start = ((y + row) * canvas_w + x) * 3;
        dst[start..start + copy_w * 3].copy_from_slice(&src_row[..copy_w * 3]);
    }
}

/// Opens a photo's headers; `index` labels the errors.
fn open(bytes: &[u8], index: usize) -> Result<(impl ImageDecoder + '_, PhotoFormat), CollageError> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| CollageError::Decode {
            index,
            reason: e.to_string(),
        })?;
    let format = match reader.format() {
        Some(ImageFormat::Jpeg) => PhotoFormat::Jpeg,
        Some(ImageFormat::Png) => PhotoFormat::Png,
        _ => return Err(CollageError::UnsupportedFormat { index }),
    };
    let decoder = reader.into_decoder().map_err(|e| CollageError::Decode {
        index,
        reason: e.to_string(),
    })?;
    Ok((decoder, format))
}

fn check_pixels(width: u32, height: u32, index: usize) -> Result<(), CollageError> {
    if u64::from(width) * u64::from(height) > MAX_SOURCE_PIXELS {
        return Err(CollageError::TooLarge {
            index,
            width,
            height,
        });
    }
    Ok(())
}

/// Decodes a photo to RGB (transparency flattened onto `background`), keeping its stored
/// orientation and remembering the EXIF one.
fn decode(bytes: &[u8], index: usize, background: [u8; 3]) -> Result<Source, CollageError> {
    let (mut decoder, _) = open(bytes, index)?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, index)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let image = DynamicImage::from_decoder(decoder).map_err(|e| CollageError::Decode {
        index,
        reason: e.to_string(),
    })?;
    let pixels = if image.color().has_alpha() {
        flatten(image.into_rgba8(), background)
    } else {
        image.into_rgb8()
    };
    Ok(Source {
        pixels,
        orientation,
    })
}

/// Blends a transparent image onto a solid background.
fn flatten(image: RgbaImage, background: [u8; 3]) -> RgbImage {
    let (width, height) = image.dimensions();
    let mut out = Vec::with_capacity(width as usize * height as usize * 3);
    for px in image.as_raw().chunks_exact(4) {
        let alpha = u32::from(px[3]);
        for (c, bg) in px[..3].iter().zip(background) {
            out.push(((u32::from(*c) * alpha + u32::from(bg) * (255 - alpha) + 127) / 255) as u8);
        }
    }
    RgbImage::from_raw(width, height, out).expect("buffer sized for the image")
}

fn swaps_axes(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// `width`×`height` scaled down (never up) so the long side is at most `max_side`.
fn fit_within(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= max_side {
        return (width, height);
    }
    let scale = f64::from(max_side) / f64::from(long);
    let w = ((f64::from(width) * scale).round() as u32).clamp(1, max_side);
    let h = ((f64::from(height) * scale).round() as u32).clamp(1, max_side);
    (w, h)
}

/// The next, shorter long side to try after the lowest quality still took `smallest` bytes,
/// or [`CollageError::TooBig`] when there is none. JPEG size grows about with the pixel count,
/// so the side shrinks by √(max_bytes / smallest) with 10% to spare, and at least by
/// [`SHRINK_STEP`].
fn shrink(long_side: u32, smallest: usize, max_bytes: usize) -> Result<u32, CollageError> {
    let estimate = (max_bytes as f64 / smallest.max(1) as f64).sqrt() * 0.9;
    let next = (f64::from(long_side) * estimate.min(SHRINK_STEP)) as u32;
    if next < MIN_SHRUNK_SIDE {
        return Err(CollageError::TooBig { max_bytes });
    }
    Ok(next)
}

/// What [`encode_within`] managed.
enum Fit {
    Fits { jpeg: Vec<u8>, quality: u8 },
    TooBig { smallest: usize },
}

/// Encodes at the highest of [`QUALITIES`] whose output fits `max_bytes`. The first quality
/// usually fits; if not, the lowest is tried, and if that fits, the highest fitting one is
/// found by bisection (at most four encodes in all).
fn encode_within(image: &RgbImage, max_bytes: usize) -> Result<Fit, CollageError> {
    let first = encode_jpeg(image, QUALITIES[0])?;
    if first.len() <= max_bytes {
        return Ok(Fit::Fits {
            jpeg: first,
            quality: QUALITIES[0],
        });
    }
    let last = QUALITIES.len() - 1;
    let mut best = encode_jpeg(image, QUALITIES[last])?;
    if best.len() > max_bytes {
        return Ok(Fit::TooBig {
            smallest: best.len(),
        });
    }
    // QUALITIES[too_big] does not fit, QUALITIES[fits] does; narrow the gap between them.
    let (mut too_big, mut fits) = (0, last);
    while fits - too_big > 1 {
        let middle = (too_big + fits) / 2;
        let jpeg = encode_jpeg(image, QUALITIES[middle])?;
        if jpeg.len() <= max_bytes {
            (fits, best) = (middle, jpeg);
        } else {
            too_big = middle;
        }
    }
    Ok(Fit::Fits {
        jpeg: best,
        quality: QUALITIES[fits],
    })
}

/// Baseline JPEG with 4:2:0 chroma subsampling (as cameras and Telegram do), through the
/// `jpeg-encoder` crate: `image`'s own encoder only writes 4:4:4, which is slower and about a
/// third bigger at the same quality.
fn encode_jpeg(image: &RgbImage, quality: u8) -> Result<Vec<u8>, CollageError> {
    let (width, height) = image.dimensions();
    let too_big = || CollageError::Encode(format!("{width}×{height} is too large for JPEG"));
    let width = u16::try_from(width).map_err(|_| too_big())?;
    let height = u16::try_from(height).map_err(|_| too_big())?;
    let mut out = Vec::with_capacity(image.as_raw().len() / 8);
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    encoder
        .encode(image.as_raw(), width, height, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| CollageError::Encode(e.to_string()))?;
    Ok(out)
}

/// Synthetic photos for tests and benchmarks (here, and in other crates' end-to-end tests):
/// deterministic, with detail (gradients, rings, stripes, noise) rather than flat colour, and a
/// red marker square in the *stored* top-left corner so a test can see where EXIF rotation
/// moved it.
pub mod fixtures {
    use image::RgbImage;
    use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

    /// A `width`×`height` (stored) JPEG at quality 90, 4:2:0 like a camera's. `noise` (0–255) is the amplitude of
    /// per-pixel random noise (high values make the JPEG large); `orientation` is the EXIF
    /// Orientation tag to write (1 = none, 6 = displayed rotated 90° clockwise, 1–8).
    pub fn synthetic_jpeg(
        width: u32,
        height: u32,
        seed: u32,
        noise: u8,
        orientation: u8,
    ) -> Vec<u8> {
        let image = pattern(width, height, seed, noise);
        let mut out = Vec::new();
        let mut encoder = Encoder::new(&mut out, 90);
        encoder.set_sampling_factor(SamplingFactor::F_2_2);
        if orientation != 1 {
            let segment = [&b"Exif\0\0"[..], &exif_orientation(orientation)].concat();
            encoder
                .add_app_segment(1, &segment)
                .expect("a small APP1 segment");
        }
        let (w, h) = (width as u16, height as u16);
        encoder
            .encode(image.as_raw(), w, h, ColorType::Rgb)
            .expect("a synthetic image encodes");
        out
    }

    /// The picture behind [`synthetic_jpeg`], as raw RGB.
    pub fn pattern(width: u32, height: u32, seed: u32, noise: u8) -> RgbImage {
        let marker = (width.min(height) / 8).max(1);
        let (cx, cy) = (width as f32 * 0.6, height as f32 * 0.4);
        let hue = (seed % 7) as f32;
        RgbImage::from_fn(width, height, |x, y| {
            if x < marker && y < marker {
                return image::Rgb([255, 0, 0]);
            }
            let (fx, fy) = (x as f32, y as f32);
            let ring = (((fx - cx).hypot(fy - cy) / (6.0 + hue)).sin() * 60.0) as i32;
            let stripes = (((fx * 0.9 + fy * 0.4) / 3.0 + hue).sin() * 30.0) as i32;
            let n = i32::from(noise);
            let jitter = if n == 0 {
                0
            } else {
                (hash(x, y, seed) % (2 * n as u32 + 1)) as i32 - n
            };
            let base_r = (x * 200 / width.max(1)) as i32;
            let base_g = (y * 200 / height.max(1)) as i32;
            let base_b = 120 + (seed as i32 * 37) % 100;
            let c = |v: i32| v.clamp(0, 255) as u8;
            image::Rgb([
                c(base_r + ring + jitter),
                c(base_g + stripes - jitter / 2),
                c(base_b - ring / 2 + jitter),
            ])
        })
    }

    /// A TIFF block (as inside a JPEG APP1 "Exif" segment) holding only the Orientation tag.
    pub fn exif_orientation(orientation: u8) -> Vec<u8> {
        let mut tiff = Vec::with_capacity(26);
        tiff.extend_from_slice(b"MM\0\x2a"); // big-endian TIFF
        tiff.extend_from_slice(&8u32.to_be_bytes()); // first IFD right after the header
        tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry:
        tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation,
        tiff.extend_from_slice(&3u16.to_be_bytes()); // type SHORT,
        tiff.extend_from_slice(&1u32.to_be_bytes()); // one value,
        tiff.extend_from_slice(&u16::from(orientation).to_be_bytes()); // the value, padded
        tiff.extend_from_slice(&[0, 0]);
        tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
        tiff
    }

    fn hash(x: u32, y: u32, seed: u32) -> u32 {
        let mut h = x.wrapping_mul(0x9e37_79b1) ^ y.wrapping_mul(0x85eb_ca77) ^ seed;
        h ^= h >> 15;
        h = h.wrapping_mul(0x2c1b_3c6d);
        h ^= h >> 12;
        h
    }
}
