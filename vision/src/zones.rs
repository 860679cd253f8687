//! Which zone a person is in: the middle of the box's bottom edge (where the feet are) inside the
//! zone's polygon.

use offsite_wire::{BoxN, Point, Zone, ZoneId};

pub fn foot_point(b: &BoxN) -> Point {
    [(b.x1 + b.x2) / 2.0, b.y2]
}

/// Even-odd rule: a ray to the right from `p` crosses the polygon's edges an odd number of times
/// when `p` is inside. Works for any simple or self-intersecting polygon, open or closed.
pub fn point_in_polygon(p: Point, poly: &[Point]) -> bool {
    let [px, py] = p;
    let mut inside = false;
    let mut j = poly.len().wrapping_sub(1);
    for i in 0..poly.len() {
        let ([xi, yi], [xj, yj]) = (poly[i], poly[j]);
        // Half-open in y ((yi > py) != (yj > py)) so a vertex on the ray counts once.
        if (yi > py) != (yj > py) {
            let x_cross = xi + (py - yi) * (xj - xi) / (yj - yi);
            if px < x_cross {
                inside = !inside;
            }
        }
        j = i;
    }
    inside
}

/// Persons per zone, in the zones' order. A person standing where zones overlap counts in each.
pub fn count_per_zone(boxes: &[BoxN], zones: &[Zone]) -> Vec<(ZoneId, u32)> {
    zones
        .iter()
        .map(|z| {
            let n = boxes.iter().filter(|b| point_in_polygon(foot_point(b), &z.polygon)).count();
            (z.id.clone(), n as u32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use offsite_wire::ZoneKind;

    fn person(cx: f32, foot_y: f32) -> BoxN {
        BoxN { x1: cx - 0.05, y1: foot_y - 0.3, x2: cx + 0.05, y2: foot_y, score: 0.9 }
    }

    fn zone(id: &str, polygon: Vec<Point>) -> Zone {
        Zone { id: ZoneId::parse(id).unwrap(), name: id.to_owned(), kind: ZoneKind::Window, polygon }
    }

    #[test]
    fn square_and_concave_polygons() {
        let square = [[0.2, 0.2], [0.6, 0.2], [0.6, 0.6], [0.2, 0.6]];
        assert!(point_in_polygon([0.4, 0.4], &square));
        assert!(!point_in_polygon([0.7, 0.4], &square));
        assert!(!point_in_polygon([0.1, 0.4], &square));
        assert!(!point_in_polygon([0.4, 0.65], &square));
        // An L: the notch at the top right is outside.
        let l = [[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]];
        assert!(point_in_polygon([0.25, 0.25], &l));
        assert!(!point_in_polygon([0.75, 0.25], &l));
        assert!(point_in_polygon([0.75, 0.75], &l));
        // A ray through a vertex ((0.5, 0.5) lies on y = 0.5) is counted once.
        assert!(point_in_polygon([0.25, 0.5], &l));
    }

    #[test]
    fn even_odd_leaves_the_overlap_of_a_bow_tie_out() {
        // A star drawn in one stroke: the pentagon in the middle is outside under even-odd.
        let star = [[0.5, 0.0], [0.8, 1.0], [0.0, 0.35], [1.0, 0.35], [0.2, 1.0]];
        assert!(!point_in_polygon([0.5, 0.55], &star));
        assert!(point_in_polygon([0.5, 0.1], &star));
    }

    #[test]
    fn degenerate_polygons_hold_nothing() {
        assert!(!point_in_polygon([0.5, 0.5], &[]));
        assert!(!point_in_polygon([0.5, 0.5], &[[0.5, 0.5]]));
        assert!(!point_in_polygon([0.5, 0.5], &[[0.0, 0.0], [1.0, 1.0]]));
    }

    #[test]
    fn people_are_counted_where_their_feet_are() {
        let window = zone("w1", vec![[0.0, 0.5], [0.5, 0.5], [0.5, 1.0], [0.0, 1.0]]);
        let queue = zone("queue", vec![[0.5, 0.5], [1.0, 0.5], [1.0, 1.0], [0.5, 1.0]]);
        let boxes = [
            person(0.25, 0.9),
            // Head in the window zone, feet in the queue: the queue.
            BoxN { x1: 0.4, y1: 0.55, x2: 0.7, y2: 0.95, score: 0.8 },
            person(0.75, 0.7),
            // Standing above both zones.
            person(0.25, 0.3),
        ];
        let counts = count_per_zone(&boxes, &[window.clone(), queue.clone()]);
        assert_eq!(counts, vec![(window.id.clone(), 1), (queue.id.clone(), 2)]);
        assert_eq!(count_per_zone(&[], std::slice::from_ref(&window)), vec![(window.id, 0)]);
        assert!(count_per_zone(&boxes, &[]).is_empty());
    }
}
