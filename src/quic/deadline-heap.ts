/**
 * A binary min-heap of items by deadline, each item at most once, with O(log n) insert, move and delete (positions
 * are tracked per item). The endpoint keeps one entry per connection in it, so finding the next timer is O(1) and
 * firing timers visits only the connections that are due, however many are open.
 */
export class DeadlineHeap<T> {
  private readonly items: T[] = [];
  private readonly times: number[] = [];
  private readonly index = new Map<T, number>();

  get size(): number {
    return this.items.length;
  }

  /** The earliest deadline, Infinity when empty. */
  peekTime(): number {
    return this.items.length ? this.times[0] : Infinity;
  }

  /** The item with the earliest deadline. */
  peekItem(): T | undefined {
    return this.items[0];
  }

  has(item: T): boolean {
    return this.index.has(item);
  }

  /** The item's deadline, or undefined when it has none. */
  timeOf(item: T): number | undefined {
    const i = this.index.get(item);
    return i === undefined ? undefined : this.times[i];
  }

  /** Inserts the item or moves it to `at`. */
  set(item: T, at: number): void {
    const i = this.index.get(item);
    if (i === undefined) {
      this.items.push(item);
      this.times.push(at);
      this.index.set(item, this.items.length - 1);
      this.up(this.items.length - 1);
      return;
    }
    const old = this.times[i];
    if (at === old) return;
    this.times[i] = at;
    if (at < old) this.up(i);
    else this.down(i);
  }

  delete(item: T): void {
    const i = this.index.get(item);
    if (i === undefined) return;
    this.index.delete(item);
    const lastItem = this.items.pop()!;
    const lastTime = this.times.pop()!;
    if (i === this.items.length) return; // it was the last slot
    this.items[i] = lastItem;
    this.times[i] = lastTime;
    this.index.set(lastItem, i);
    this.up(i);
    this.down(this.index.get(lastItem)!);
  }

  private swap(a: number, b: number): void {
    const ia = this.items[a];
    const ib = this.items[b];
    this.items[a] = ib;
    this.items[b] = ia;
    const t = this.times[a];
    this.times[a] = this.times[b];
    this.times[b] = t;
    this.index.set(ib, a);
    this.index.set(ia, b);
  }

  private up(i: number): void {
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.times[p] <= this.times[i]) return;
      this.swap(i, p);
      i = p;
    }
  }

  private down(i: number): void {
    const n = this.items.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) return;
      const r = l + 1;
      const c = r < n && this.times[r] < this.times[l] ? r : l;
      if (this.times[i] <= this.times[c]) return;
      this.swap(i, c);
      i = c;
    }
  }
}
