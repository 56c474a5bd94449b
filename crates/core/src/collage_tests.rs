//! Collage tests: layout geometry for 1–10 photos (also as a property test), crop-not-stretch,
//! the size bounds even for noise, EXIF orientation, and errors that name the photo.
//! Inputs are small synthetic photos (`collage::fixtures`) so the suite stays fast.

use crate::collage::fixtures::{exif_orientation, pattern, synthetic_jpeg};
use crate::collage::*;
use image::{ImageEncoder, Rgb, RgbImage};
use proptest::prelude::*;

const LANDSCAPE: (u32, u32) = (1280, 960);
const PORTRAIT: (u32, u32) = (960, 1280);
const WIDE: (u32, u32) = (1920, 1080);
const PANORAMA: (u32, u32) = (4000, 1000);
const SCREENSHOT: (u32, u32) = (1080, 2400);

/// Mixes of orientations, cut to every count from 1 to 10.
fn mixes() -> Vec<Vec<(u32, u32)>> {
    let patterns: [&[(u32, u32)]; 5] = [
        &[LANDSCAPE],
        &[PORTRAIT],
        &[LANDSCAPE, PORTRAIT],
        &[PORTRAIT, LANDSCAPE, LANDSCAPE, WIDE],
        &[PANORAMA, SCREENSHOT, LANDSCAPE, PORTRAIT, (640, 640)],
    ];
    let mut out = Vec::new();
    for pattern in patterns {
        for n in 1..=MAX_PHOTOS {
            out.push(pattern.iter().cycle().take(n).copied().collect());
        }
    }
    out
}

/// Every invariant a layout must keep, with the reason of the first broken one.
fn check_layout(dims: &[(u32, u32)], opts: &CollageOptions, layout: &Layout) -> Result<(), String> {
    let long = layout.width.max(layout.height);
    if long > opts.max_side || layout.width == 0 || layout.height == 0 {
        return Err(format!("canvas {}×{}", layout.width, layout.height));
    }
    if layout.cells.len() != dims.len() {
        return Err(format!(
            "{} cells for {} photos",
            layout.cells.len(),
            dims.len()
        ));
    }
    for (i, cell) in layout.cells.iter().enumerate() {
        if cell.photo != i {
            return Err(format!("cell {i} holds photo {}", cell.photo));
        }
        if cell.width == 0 || cell.height == 0 {
            return Err(format!("empty cell {cell:?}"));
        }
        if cell.x + cell.width > layout.width || cell.y + cell.height > layout.height {
            return Err(format!(
                "{cell:?} outside {}×{}",
                layout.width, layout.height
            ));
        }
        for other in &layout.cells[i + 1..] {
            // Apart by at least the gap horizontally or vertically (so no overlap either).
            let apart_x = cell.x + cell.width + opts.gap <= other.x
                || other.x + other.width + opts.gap <= cell.x;
            let apart_y = cell.y + cell.height + opts.gap <= other.y
                || other.y + other.height + opts.gap <= cell.y;
            if !apart_x && !apart_y {
                return Err(format!("{cell:?} and {other:?} closer than the gap"));
            }
        }
    }
    Ok(())
}

fn rows_of(layout: &Layout) -> Vec<usize> {
    let mut rows: Vec<(u32, usize)> = Vec::new();
    for cell in &layout.cells {
        match rows.last_mut() {
            Some((y, count)) if *y == cell.y => *count += 1,
            _ => rows.push((cell.y, 1)),
        }
    }
    rows.into_iter().map(|(_, count)| count).collect()
}

#[test]
fn layouts_for_one_to_ten_photos_of_mixed_orientation_keep_every_invariant() {
    let opts = CollageOptions::default();
    for dims in mixes() {
        let layout = plan_layout(&dims, &opts);
        check_layout(&dims, &opts, &layout).unwrap_or_else(|e| panic!("{dims:?}: {e}"));
        // The canvas is as big as the photos allow (within the gap and rounding), up to
        // max_side; each row fills the width.
        let photo_long = dims.iter().map(|&(w, h)| w.max(h)).max().unwrap();
        let long = layout.width.max(layout.height);
        assert!(
            long + 2 * opts.gap >= photo_long.min(opts.max_side),
            "{dims:?}: {long}"
        );
        for cell in &layout.cells {
            let row_end = layout
                .cells
                .iter()
                .filter(|c| c.y == cell.y)
                .map(|c| c.x + c.width)
                .max()
                .unwrap();
            assert_eq!(row_end, layout.width, "{dims:?}: row at y={}", cell.y);
        }
        // Cells keep the photo's shape (clamped to 1:2..2:1) within rounding: little is cut.
        for (cell, &(w, h)) in layout.cells.iter().zip(&dims) {
            let photo = (w as f64 / h as f64).clamp(0.5, 2.0);
            let shown = cell.width as f64 / cell.height as f64;
            assert!((shown / photo - 1.0).abs() < 0.03, "{dims:?}: {cell:?}");
        }
    }
}

#[test]
fn layout_groups_by_orientation_into_sensible_rows() {
    let opts = CollageOptions::default();
    let rows = |dims: &[(u32, u32)]| rows_of(&plan_layout(dims, &opts));
    assert_eq!(rows(&[LANDSCAPE]), [1]);
    assert_eq!(rows(&[LANDSCAPE; 2]), [1, 1], "two landscapes are stacked");
    assert_eq!(rows(&[PORTRAIT; 2]), [2], "two portraits sit side by side");
    assert_eq!(rows(&[PORTRAIT; 4]), [2, 2]);
    assert_eq!(rows(&[LANDSCAPE; 4]), [2, 2]);
    assert_eq!(rows(&[LANDSCAPE; 10]), [3, 3, 4]);
    let single = plan_layout(&[WIDE], &opts);
    assert_eq!((single.width, single.height), (1600, 900));
    let tall = plan_layout(&[PORTRAIT; 2], &opts);
    assert!(
        tall.width > tall.height,
        "side by side portraits make a wide canvas"
    );
}

#[test]
fn small_photos_are_not_blown_up_but_the_canvas_keeps_a_minimum() {
    let opts = CollageOptions::default();
    let layout = plan_layout(&[(800, 600)], &opts);
    assert_eq!((layout.width, layout.height), (800, 600));
    let layout = plan_layout(&[(200, 150), (200, 150)], &opts);
    let long = layout.width.max(layout.height);
    assert!((630..=640).contains(&long), "{layout:?}");
    assert!(plan_layout(&[], &opts).cells.is_empty());
}

proptest! {
    #[test]
    fn any_layout_keeps_every_invariant(
        dims in prop::collection::vec((1u32..6000, 1u32..6000), 1..=MAX_PHOTOS),
        gap in 0u32..12,
        max_side in 400u32..2500,
    ) {
        let opts = CollageOptions { gap, max_side, ..CollageOptions::default() };
        let layout = plan_layout(&dims, &opts);
        prop_assert_eq!(check_layout(&dims, &opts, &layout), Ok(()));
    }

    #[test]
    fn the_cover_crop_has_the_cells_shape_within_a_pixel(
        sw in 1u32..5000, sh in 1u32..5000, w in 1u32..1600, h in 1u32..1600,
    ) {
        let (cw, ch) = cover_crop(sw, sh, w, h);
        prop_assert!(cw <= sw && ch <= sh);
        prop_assert!(cw == sw || ch == sh, "one side is whole");
        // The crop is the exact region the uniform cover scale needs, rounded to whole source
        // pixels (at least one)...
        let scale = f64::max(w as f64 / sw as f64, h as f64 / sh as f64);
        let (exact_w, exact_h) = (w as f64 / scale, h as f64 / scale);
        prop_assert!((cw as f64 - exact_w).abs() <= 0.5 + 1e-9 || cw == 1);
        prop_assert!((ch as f64 - exact_h).abs() <= 0.5 + 1e-9 || ch == 1);
        // ...so when shrinking, the scaled crop matches the cell's shape within a pixel.
        if scale <= 1.0 {
            prop_assert!((cw as f64 * scale - w as f64).abs() <= 1.0, "crop {}×{} for {}×{}", cw, ch, w, h);
            prop_assert!((ch as f64 * scale - h as f64).abs() <= 1.0, "crop {}×{} for {}×{}", cw, ch, w, h);
        }
    }
}

/// Draws an RGB image and returns it as a PNG, for inputs the JPEG fixture cannot make.
fn png(image: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

fn decode(jpeg: &[u8]) -> RgbImage {
    image::load_from_memory(jpeg).unwrap().to_rgb8()
}

fn is_red(p: &Rgb<u8>) -> bool {
    p[0] > 200 && p[1] < 60 && p[2] < 60
}

#[test]
fn photos_are_cropped_centred_not_stretched() {
    // 2000×1000: a black band on the left quarter and a white 100×100 square in the middle.
    let mut source = RgbImage::from_pixel(2000, 1000, Rgb([90, 90, 200]));
    for (x, y, p) in source.enumerate_pixels_mut() {
        if x < 500 {
            *p = Rgb([0, 0, 0]);
        } else if (950..1050).contains(&x) && (450..550).contains(&y) {
            *p = Rgb([255, 255, 255]);
        }
    }
    // Into a square cell at half scale: the middle 1000×1000 is kept, the sides are cut.
    let tile = cover(&source, 500, 500);
    assert_eq!(tile.dimensions(), (500, 500));
    assert!(
        tile.pixels().all(|p| p[0] > 40),
        "the black band is cropped away, not squeezed in"
    );
    let white: Vec<(u32, u32)> = tile
        .enumerate_pixels()
        .filter(|(_, _, p)| p[0] > 200 && p[2] > 200)
        .map(|(x, y, _)| (x, y))
        .collect();
    let span = |f: fn(&(u32, u32)) -> u32| {
        white.iter().map(f).max().unwrap() - white.iter().map(f).min().unwrap() + 1
    };
    let (w, h) = (span(|p| p.0), span(|p| p.1));
    assert!(
        (49..=51).contains(&w) && (49..=51).contains(&h),
        "square stays square: {w}×{h}"
    );
    // Upscaling keeps the shape too (the cell is wider than the photo's shape).
    let tile = cover(&pattern(300, 300, 1, 0), 600, 300);
    assert_eq!(tile.dimensions(), (600, 300));
}

#[test]
fn a_collage_of_ten_mixed_photos_is_within_bounds_and_shows_every_photo() {
    let photos: Vec<Vec<u8>> = (0..10u32)
        .map(|i| match i % 3 {
            0 => synthetic_jpeg(480, 360, i, 8, 1),
            1 => synthetic_jpeg(480, 360, i, 8, 6), // shown as a 360×480 portrait
            _ => synthetic_jpeg(320, 480, i, 8, 1),
        })
        .collect();
    let refs: Vec<&[u8]> = photos.iter().map(Vec::as_slice).collect();
    let opts = CollageOptions::default();
    let collage = build_collage(&refs, &opts).unwrap();
    assert!(collage.jpeg.len() <= opts.max_bytes);
    let image = decode(&collage.jpeg);
    assert_eq!(image.dimensions(), (collage.width, collage.height));
    assert!(collage.width.max(collage.height) <= 1600);
    let dims: Vec<(u32, u32)> = refs
        .iter()
        .map(|b| probe(b).unwrap())
        .map(|i| (i.width, i.height))
        .collect();
    check_layout(
        &dims,
        &opts,
        &Layout {
            width: collage.width,
            height: collage.height,
            cells: collage.cells.clone(),
        },
    )
    .unwrap();
    for cell in &collage.cells {
        // Each cell shows its photo: the photo's red marker lands in the cell's matching corner.
        let rotated = cell.photo % 3 == 1;
        let (mx, my) = if rotated {
            (cell.x + cell.width - 3, cell.y + 2) // stored top-left → displayed top-right
        } else {
            (cell.x + 2, cell.y + 2)
        };
        assert!(
            is_red(image.get_pixel(mx, my)),
            "photo {} marker at {mx},{my}",
            cell.photo
        );
        // And the gap to the right of the cell (if any) is the background.
        if cell.x + cell.width < collage.width {
            let g = image.get_pixel(cell.x + cell.width + opts.gap / 2, cell.y + cell.height / 2);
            assert!(g.0.iter().all(|&c| c > 230), "gap right of {cell:?}: {g:?}");
        }
    }
}

#[test]
fn noisy_photos_still_fit_the_byte_limit() {
    let photos: Vec<Vec<u8>> = (0..10u32)
        .map(|i| synthetic_jpeg(640, 480, i, 255, 1))
        .collect();
    let refs: Vec<&[u8]> = photos.iter().map(Vec::as_slice).collect();
    let opts = CollageOptions::default();
    let collage = build_collage(&refs, &opts).unwrap();
    assert!(
        collage.jpeg.len() <= 1_000_000,
        "{} bytes",
        collage.jpeg.len()
    );
    assert!(collage.width.max(collage.height) <= 1600);

    // A tight limit forces lower quality and then a smaller canvas, never an overshoot.
    let tight = CollageOptions {
        max_bytes: 120_000,
        ..opts
    };
    let small = build_collage(&refs, &tight).unwrap();
    assert!(small.jpeg.len() <= 120_000, "{} bytes", small.jpeg.len());
    assert!(small.quality <= collage.quality);
    assert!(small.width < collage.width);
    assert_eq!(
        decode(&small.jpeg).dimensions(),
        (small.width, small.height)
    );

    let impossible = CollageOptions {
        max_bytes: 1_000,
        ..CollageOptions::default()
    };
    assert_eq!(
        build_collage(&refs, &impossible),
        Err(CollageError::TooBig { max_bytes: 1_000 })
    );
}

#[test]
fn exif_orientation_is_honoured_by_probe_normalise_and_collage() {
    // Stored 400×300 with the marker at the stored top-left.
    let cases = [
        (1, (400, 300), (2, 2)),     // as stored
        (6, (300, 400), (297, 2)),   // 90° clockwise: marker top-right
        (3, (400, 300), (397, 297)), // 180°: bottom-right
        (8, (300, 400), (2, 397)),   // 90° counter-clockwise: bottom-left
    ];
    for (orientation, (w, h), (mx, my)) in cases {
        let jpeg = synthetic_jpeg(400, 300, 3, 0, orientation);
        let info = probe(&jpeg).unwrap();
        assert_eq!(
            (info.width, info.height, info.format),
            (w, h, PhotoFormat::Jpeg),
            "{orientation}"
        );

        let normal = decode(&normalise_photo(&jpeg, 1600, 1_000_000).unwrap());
        assert_eq!(normal.dimensions(), (w, h), "orientation {orientation}");
        assert!(
            is_red(normal.get_pixel(mx, my)),
            "orientation {orientation}: marker at {mx},{my}"
        );
        assert!(
            !is_red(normal.get_pixel(w - 1 - mx, h - 1 - my)),
            "orientation {orientation}"
        );

        let collage = build_collage(&[&jpeg], &CollageOptions::default()).unwrap();
        let cell = collage.cells[0];
        assert_eq!(
            cell.width > cell.height,
            w > h,
            "orientation {orientation}: {cell:?}"
        );
    }
    assert_eq!(exif_orientation(6).len(), 26);
}

#[test]
fn normalise_photo_keeps_bounds_and_never_upscales() {
    let big = synthetic_jpeg(2400, 1800, 5, 60, 1);
    let out = normalise_photo(&big, 1280, 150_000).unwrap();
    assert!(out.len() <= 150_000);
    let image = decode(&out);
    assert!(image.width() <= 1280 && image.height() <= 1280);
    let skew = (image.width() * 3).abs_diff(image.height() * 4);
    assert!(skew <= 4, "aspect kept: {:?}", image.dimensions());

    let small = synthetic_jpeg(300, 200, 5, 0, 1);
    assert_eq!(
        decode(&normalise_photo(&small, 1600, 1_000_000).unwrap()).dimensions(),
        (300, 200)
    );
}

#[test]
fn png_photos_work_and_transparency_shows_the_background() {
    let opaque = png(&pattern(300, 200, 2, 0));
    assert_eq!(probe(&opaque).unwrap().format, PhotoFormat::Png);
    let mut clear = Vec::new();
    image::codecs::png::PngEncoder::new(&mut clear)
        .write_image(&[0u8; 64 * 64 * 4], 64, 64, image::ExtendedColorType::Rgba8)
        .unwrap();
    let opts = CollageOptions {
        background: [0, 200, 0],
        ..CollageOptions::default()
    };
    let collage = build_collage(&[&opaque, &clear], &opts).unwrap();
    let image = decode(&collage.jpeg);
    let cell = collage.cells[1];
    let p = image.get_pixel(cell.x + cell.width / 2, cell.y + cell.height / 2);
    assert!(
        p[0] < 40 && p[1] > 160 && p[2] < 40,
        "transparent shows the background: {p:?}"
    );
}

#[test]
fn errors_name_the_photo_and_read_well() {
    let good = synthetic_jpeg(120, 90, 1, 0, 1);
    let not_image = b"%PDF-1.4 not a photo".to_vec();
    let broken = [&[0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x03][..], &[0x42; 40]].concat();

    let err = build_collage(&[&good, &not_image], &CollageOptions::default()).unwrap_err();
    assert_eq!(err, CollageError::UnsupportedFormat { index: 1 });
    assert_eq!(err.to_string(), "photo 2 is not a JPEG or PNG image");

    let err = build_collage(&[&good, &good, &broken], &CollageOptions::default()).unwrap_err();
    assert!(
        matches!(err, CollageError::Decode { index: 2, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("photo 3 could not be read: "),
        "{err}"
    );

    assert_eq!(
        build_collage(&[], &CollageOptions::default()),
        Err(CollageError::NoPhotos)
    );
    let eleven: Vec<&[u8]> = vec![&good; 11];
    assert_eq!(
        build_collage(&eleven, &CollageOptions::default()),
        Err(CollageError::TooMany(11))
    );
    assert_eq!(
        CollageError::TooMany(11).to_string(),
        "too many photos: 11 (at most 10)"
    );
    assert!(matches!(
        normalise_photo(&broken, 1600, 1_000_000),
        Err(CollageError::Decode { index: 0, .. })
    ));
}
