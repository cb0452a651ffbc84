/**
 * A set of half-open integer ranges [start, end), kept sorted and merged (touching ranges coalesce).
 * Used for stream reassembly (RFC 9000 §2.2) and send-side acknowledgement / loss bookkeeping (§3.1, RFC 9002 §6).
 *
 * Storage is two parallel number arrays, searched by binary search, so lookups are O(log n) and the common
 * "extend the last range" / "extend the first range" cases are cheap.
 */
export class RangeSet {
  private starts: number[] = [];
  private ends: number[] = [];

  /** Number of disjoint ranges. */
  get size(): number {
    return this.starts.length;
  }

  /** Sum of the lengths of all ranges. */
  get totalLength(): number {
    let t = 0;
    for (let i = 0; i < this.starts.length; i++) t += this.ends[i] - this.starts[i];
    return t;
  }

  /** First index whose end is >= x (or > x when strict). */
  private firstEndAtLeast(x: number, strict: boolean): number {
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const e = this.ends[mid];
      if (strict ? e > x : e >= x) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** First index at or after `from` whose start is > x (>= x when orEqual). */
  private firstStartAbove(x: number, orEqual: boolean, from: number): number {
    let lo = from;
    let hi = this.starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const s = this.starts[mid];
      if (orEqual ? s >= x : s > x) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** Adds [start, end). Returns how many positions were newly covered. */
  add(start: number, end: number): number {
    if (end <= start) return 0;
    const n = this.starts.length;
    if (n === 0) {
      // Fresh arrays of one element: pushing onto an empty array reserves 17 slots, and most sets (a stream's
      // received or acknowledged bytes) never hold more than one range.
      this.starts = [start];
      this.ends = [end];
      return end - start;
    }
    // Fast path: strictly after everything (the in-order case).
    if (start > this.ends[n - 1]) {
      this.starts.push(start);
      this.ends.push(end);
      return end - start;
    }
    const i = this.firstEndAtLeast(start, false); // ranges before i end before start and don't touch it
    const j = this.firstStartAbove(end, false, i); // ranges from j on start after end and don't touch it
    if (i === j) {
      this.starts.splice(i, 0, start);
      this.ends.splice(i, 0, end);
      return end - start;
    }
    const newStart = Math.min(start, this.starts[i]);
    const newEnd = Math.max(end, this.ends[j - 1]);
    let covered = 0;
    for (let k = i; k < j; k++) covered += this.ends[k] - this.starts[k];
    if (j - i === 1) {
      this.starts[i] = newStart;
      this.ends[i] = newEnd;
    } else {
      this.starts.splice(i, j - i, newStart);
      this.ends.splice(i, j - i, newEnd);
    }
    return newEnd - newStart - covered;
  }

  /** Removes [start, end). Returns how many positions were removed. */
  remove(start: number, end: number): number {
    if (end <= start || this.starts.length === 0) return 0;
    const i = this.firstEndAtLeast(start, true); // first range ending after start
    const j = this.firstStartAbove(end, true, i); // first range starting at or after end
    if (i >= j) return 0;
    const leftStart = this.starts[i];
    const rightEnd = this.ends[j - 1];
    let removed = 0;
    for (let k = i; k < j; k++) {
      removed += Math.min(this.ends[k], end) - Math.max(this.starts[k], start);
    }
    const keepLeft = leftStart < start;
    const keepRight = rightEnd > end;
    if (j - i === 1 && keepLeft !== keepRight) {
      // Trim one range in place (the common "drop the front" case).
      if (keepLeft) this.ends[i] = start;
      else this.starts[i] = end;
      return removed;
    }
    const ns: number[] = [];
    const ne: number[] = [];
    if (keepLeft) {
      ns.push(leftStart);
      ne.push(start);
    }
    if (keepRight) {
      ns.push(end);
      ne.push(rightEnd);
    }
    this.starts.splice(i, j - i, ...ns);
    this.ends.splice(i, j - i, ...ne);
    return removed;
  }

  has(pos: number): boolean {
    const i = this.firstEndAtLeast(pos, true);
    return i < this.starts.length && this.starts[i] <= pos;
  }

  /** True when every position of [start, end) is in the set (an empty range is always contained). */
  containsRange(start: number, end: number): boolean {
    if (end <= start) return true;
    const i = this.firstEndAtLeast(start, true);
    return i < this.starts.length && this.starts[i] <= start && this.ends[i] >= end;
  }

  first(): [number, number] | undefined {
    return this.starts.length === 0 ? undefined : [this.starts[0], this.ends[0]];
  }

  last(): [number, number] | undefined {
    const n = this.starts.length;
    return n === 0 ? undefined : [this.starts[n - 1], this.ends[n - 1]];
  }

  /** Start of the first range (no allocation); undefined when empty. */
  firstStart(): number | undefined {
    return this.starts[0];
  }

  /** End of the first range (no allocation); undefined when empty. */
  firstEnd(): number | undefined {
    return this.ends[0];
  }

  /** End of the last range (no allocation); undefined when empty. */
  lastEnd(): number | undefined {
    return this.ends[this.ends.length - 1];
  }

  /** The parts of [start, end) NOT in the set, in order. */
  gaps(start: number, end: number): [number, number][] {
    const out: [number, number][] = [];
    if (end <= start) return out;
    let pos = start;
    let i = this.firstEndAtLeast(start, true);
    while (pos < end) {
      if (i >= this.starts.length || this.starts[i] >= end) {
        out.push([pos, end]);
        break;
      }
      if (this.starts[i] > pos) out.push([pos, this.starts[i]]);
      pos = Math.max(pos, this.ends[i]);
      i++;
    }
    return out;
  }

  clear(): void {
    this.starts.length = 0;
    this.ends.length = 0;
  }

  *[Symbol.iterator](): Iterator<[number, number]> {
    for (let i = 0; i < this.starts.length; i++) yield [this.starts[i], this.ends[i]];
  }
}
