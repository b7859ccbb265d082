/*
 * Lucene BM25 with the nori analyzer (KoreanAnalyzer, Elasticsearch's `nori` analyzer), for bench/peers.py.
 *
 * Compiled by `make nori` against Debian's liblucene8-java (Lucene 8.8.1; its jars are named *-8.7.0.jar) into
 * ~/.cache/koembed-peers/nori, never into the repository. Modes:
 *
 *   index  CORPUS INDEX [THREADS]            JSON lines {"id", "contents"} (a file, or every *.jsonl in a folder)
 *   search INDEX QUERIES RESULT K SPAWNED    the search worker: QUERIES = JSON [[qid, text], ...]; writes hits,
 *                                            per-query seconds, first-result time (SPAWNED = the parent's
 *                                            time.time() when it started us) and VmHWM, as bench/peer_systems.py's
 *                                            Python worker does
 *   load   INDEX QUERY OUT [K]               one query in a fresh JVM to a TREC run file (as Anserini's
 *                                            SearchCollection, which the lucene-cjk row's load runs)
 *   tokens TEXT                              the analyzer's tokens of TEXT, one line
 *
 * Analysis: new KoreanAnalyzer() with its defaults (no user dictionary, DecompoundMode.DISCARD, the default stop
 * tags, no unknown unigrams; then reading forms and lowercasing), the same at index and query time. Scoring:
 * BM25Similarity(1.2f, 0.75f) at index (norms) and search time. Query: what Elasticsearch's `match` query
 * (operator OR) builds, Lucene's QueryBuilder.createBooleanQuery: one SHOULD TermQuery per analysed token
 * position, so a repeated query term is a repeated clause (BooleanQuery's rewrite folds duplicates into one
 * clause with the summed boost: the same scores).
 *
 * Ties: koembed ranks equal scores by ascending doc id (Python string order = code point order = the unsigned
 * byte order of UTF-8). The index is sorted by the id's UTF-8 bytes (IndexWriterConfig.setIndexSort on a
 * SortedDocValuesField) and force-merged to one segment, so Lucene's own tie-break (lower internal doc id first)
 * is ascending id, at no cost per query. An index of several segments is searched with an explicit
 * Sort(score desc, id asc) instead.
 */

import java.io.IOException;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import org.apache.lucene.analysis.Analyzer;
import org.apache.lucene.analysis.TokenStream;
import org.apache.lucene.analysis.ko.KoreanAnalyzer;
import org.apache.lucene.analysis.tokenattributes.CharTermAttribute;
import org.apache.lucene.document.Document;
import org.apache.lucene.document.Field;
import org.apache.lucene.document.SortedDocValuesField;
import org.apache.lucene.document.StringField;
import org.apache.lucene.document.TextField;
import org.apache.lucene.index.DirectoryReader;
import org.apache.lucene.index.IndexWriter;
import org.apache.lucene.index.IndexWriterConfig;
import org.apache.lucene.search.IndexSearcher;
import org.apache.lucene.search.Query;
import org.apache.lucene.search.ScoreDoc;
import org.apache.lucene.search.Sort;
import org.apache.lucene.search.SortField;
import org.apache.lucene.search.TopDocs;
import org.apache.lucene.search.similarities.BM25Similarity;
import org.apache.lucene.store.FSDirectory;
import org.apache.lucene.util.BytesRef;
import org.apache.lucene.util.QueryBuilder;
import org.apache.lucene.util.Version;

public final class NoriBench {
  static final String ID = "id", CONTENTS = "contents";
  static final float K1 = 1.2f, B = 0.75f;

  public static void main(String[] args) throws Exception {
    if (args.length < 2) {
      System.err.println("usage: NoriBench index|search|load|tokens ...");
      System.exit(2);
    }
    switch (args[0]) {
      case "index": index(Paths.get(args[1]), Paths.get(args[2]), args.length > 3 ? Integer.parseInt(args[3]) : 1); break;
      case "search": search(args[1], Paths.get(args[2]), Paths.get(args[3]), Integer.parseInt(args[4]),
                            Double.parseDouble(args[5])); break;
      case "load": load(args[1], args[2], Paths.get(args[3]), args.length > 4 ? Integer.parseInt(args[4]) : 10); break;
      case "tokens": System.out.println(String.join(" ", tokens(new KoreanAnalyzer(), args[1]))); break;
      default: System.err.println("unknown mode " + args[0]); System.exit(2);
    }
  }

  static List<String> tokens(Analyzer analyzer, String text) throws IOException {
    List<String> out = new ArrayList<>();
    try (TokenStream ts = analyzer.tokenStream(CONTENTS, text)) {
      CharTermAttribute term = ts.addAttribute(CharTermAttribute.class);
      ts.reset();
      while (ts.incrementToken()) out.add(term.toString());
      ts.end();
    }
    return out;
  }

  // ---- index ----

  static void index(Path corpus, Path index, int threads) throws Exception {
    List<Path> files = new ArrayList<>();
    if (Files.isDirectory(corpus)) {
      try (DirectoryStream<Path> ds = Files.newDirectoryStream(corpus, "*.jsonl")) { ds.forEach(files::add); }
      files.sort(null);
    } else {
      files.add(corpus);
    }
    IndexWriterConfig config = new IndexWriterConfig(new KoreanAnalyzer())
        .setSimilarity(new BM25Similarity(K1, B))
        .setIndexSort(new Sort(new SortField(ID, SortField.Type.STRING)))
        .setOpenMode(IndexWriterConfig.OpenMode.CREATE)
        .setRAMBufferSizeMB(512);
    long start = System.nanoTime();
    try (IndexWriter writer = new IndexWriter(FSDirectory.open(index), config)) {
      ExecutorService pool = Executors.newFixedThreadPool(Math.max(1, threads));
      List<Future<Long>> done = new ArrayList<>();
      for (Path file : files) {
        done.add(pool.submit(() -> {
          long n = 0;
          for (String line : Files.readAllLines(file, StandardCharsets.UTF_8)) {
            if (line.isBlank()) continue;
            @SuppressWarnings("unchecked")
            Map<String, Object> doc = (Map<String, Object>) new Json(line).value();
            String id = (String) doc.get(ID);
            Document d = new Document();
            d.add(new StringField(ID, id, Field.Store.YES));
            d.add(new SortedDocValuesField(ID, new BytesRef(id)));
            d.add(new TextField(CONTENTS, (String) doc.get(CONTENTS), Field.Store.NO));
            writer.addDocument(d);
            n++;
          }
          return n;
        }));
      }
      long n = 0;
      for (Future<Long> f : done) n += f.get();
      pool.shutdown();
      writer.forceMerge(1);
      writer.commit();
      System.out.printf("indexed %d documents in %.1f s (Lucene %s, KoreanAnalyzer, one segment sorted by id)%n", n,
                        (System.nanoTime() - start) / 1e9, Version.LATEST);
    }
  }

  // ---- search ----

  static final class Searcher {
    final IndexSearcher searcher;
    final Analyzer analyzer = new KoreanAnalyzer();
    final QueryBuilder builder = new QueryBuilder(analyzer);
    final boolean oneSegment;
    final Sort byScoreThenId = new Sort(SortField.FIELD_SCORE, new SortField(ID, SortField.Type.STRING));

    Searcher(String index) throws IOException {
      DirectoryReader reader = DirectoryReader.open(FSDirectory.open(Paths.get(index)));
      oneSegment = reader.leaves().size() <= 1;  // index sorted by id (see index()): doc id order = id order
      searcher = new IndexSearcher(reader);
      searcher.setSimilarity(new BM25Similarity(K1, B));
    }

    List<Object[]> search(String text, int k) throws IOException {
      List<Object[]> hits = new ArrayList<>();
      Query query = builder.createBooleanQuery(CONTENTS, text);  // what ES's match query (operator OR) builds
      if (query == null) return hits;  // no token survived analysis
      TopDocs top = oneSegment ? searcher.search(query, k) : searcher.search(query, k, byScoreThenId, true);
      for (ScoreDoc sd : top.scoreDocs) hits.add(new Object[] {searcher.doc(sd.doc).get(ID), sd.score});
      return hits;
    }
  }

  static double now() {
    Instant t = Instant.now();
    return t.getEpochSecond() + t.getNano() / 1e9;
  }

  static void search(String index, Path queries, Path result, int k, double spawned) throws Exception {
    List<?> pairs = (List<?>) new Json(new String(Files.readAllBytes(queries), StandardCharsets.UTF_8)).value();
    Searcher s = new Searcher(index);
    Map<String, List<Object[]>> hits = new LinkedHashMap<>();
    double[] latencies = new double[pairs.size()];
    double firstAt = 0;
    for (int i = 0; i < pairs.size(); i++) {
      List<?> pair = (List<?>) pairs.get(i);
      long start = System.nanoTime();
      hits.put((String) pair.get(0), s.search((String) pair.get(1), k));
      latencies[i] = (System.nanoTime() - start) / 1e9;
      if (firstAt == 0) firstAt = now();
    }
    Map<String, Double> status = procStatus();
    StringBuilder out = new StringBuilder("{");
    out.append("\"first_result_s\": ").append(firstAt == 0 ? "null" : String.format("%.3f", firstAt - spawned));
    out.append(", \"peak_rss_mb\": ").append(status.get("VmHWM"));
    out.append(", \"rss_end_mb\": {\"anon\": ").append(status.get("RssAnon")).append(", \"file\": ")
        .append(status.get("RssFile")).append("}");
    out.append(", \"latencies_s\": [");
    for (int i = 0; i < latencies.length; i++) out.append(i > 0 ? ", " : "").append(latencies[i]);
    out.append("], \"hits\": {");
    boolean firstQ = true;
    for (Map.Entry<String, List<Object[]>> e : hits.entrySet()) {
      out.append(firstQ ? "" : ", ").append(Json.quote(e.getKey())).append(": [");
      firstQ = false;
      boolean firstH = true;
      for (Object[] h : e.getValue()) {
        out.append(firstH ? "" : ", ").append("[").append(Json.quote((String) h[0])).append(", ").append(h[1]).append("]");
        firstH = false;
      }
      out.append("]");
    }
    out.append("}, \"analyzer\": ").append(Json.quote(s.analyzer.getClass().getName()));
    out.append(", \"similarity\": ").append(Json.quote(s.searcher.getSimilarity().toString()));
    out.append(", \"lucene\": ").append(Json.quote(Version.LATEST.toString()));
    out.append(", \"query\": \"QueryBuilder.createBooleanQuery (SHOULD per token position)\"");
    out.append(", \"ties\": ").append(Json.quote(s.oneSegment ? "index sorted by id, one segment"
                                                             : "Sort(score desc, id asc)"));
    out.append("}");
    try (Writer w = Files.newBufferedWriter(result, StandardCharsets.UTF_8)) { w.write(out.toString()); }
  }

  static void load(String index, String query, Path out, int k) throws Exception {
    Searcher s = new Searcher(index);
    StringBuilder run = new StringBuilder();
    int rank = 1;
    for (Object[] h : s.search(query, k)) {
      run.append("q Q0 ").append(h[0]).append(' ').append(rank++).append(' ').append(h[1]).append(" nori\n");
    }
    Files.write(out, run.toString().getBytes(StandardCharsets.UTF_8));
  }

  /** VmHWM, RssAnon, RssFile of this process in MB (one decimal). */
  static Map<String, Double> procStatus() throws IOException {
    Map<String, Double> out = new LinkedHashMap<>();
    for (String line : Files.readAllLines(Paths.get("/proc/self/status"))) {
      String[] parts = line.split("\\s+");
      if (parts.length >= 2 && (line.startsWith("VmHWM:") || line.startsWith("RssAnon:") || line.startsWith("RssFile:"))) {
        out.put(parts[0].substring(0, parts[0].length() - 1), Math.round(Long.parseLong(parts[1]) / 1024.0 * 10) / 10.0);
      }
    }
    return out;
  }

  /** A small JSON reader (objects, arrays, strings, numbers, literals): enough for the bench's files. */
  static final class Json {
    final String s;
    int i;

    Json(String s) { this.s = s; }

    Object value() {
      skip();
      char c = s.charAt(i);
      if (c == '{') {
        Map<String, Object> m = new LinkedHashMap<>();
        i++; skip();
        if (s.charAt(i) == '}') { i++; return m; }
        while (true) {
          skip(); String key = string(); skip(); expect(':');
          m.put(key, value()); skip();
          if (s.charAt(i++) == '}') return m;
        }
      }
      if (c == '[') {
        List<Object> l = new ArrayList<>();
        i++; skip();
        if (s.charAt(i) == ']') { i++; return l; }
        while (true) {
          l.add(value()); skip();
          if (s.charAt(i++) == ']') return l;
        }
      }
      if (c == '"') return string();
      int start = i;
      while (i < s.length() && ",]} \t\r\n".indexOf(s.charAt(i)) < 0) i++;
      String word = s.substring(start, i);
      switch (word) {
        case "true": return Boolean.TRUE;
        case "false": return Boolean.FALSE;
        case "null": return null;
        default: return Double.parseDouble(word);
      }
    }

    void skip() { while (i < s.length() && Character.isWhitespace(s.charAt(i))) i++; }

    void expect(char c) {
      if (s.charAt(i++) != c) throw new IllegalArgumentException("expected " + c + " at " + (i - 1));
    }

    String string() {
      expect('"');
      StringBuilder b = new StringBuilder();
      while (true) {
        char c = s.charAt(i++);
        if (c == '"') return b.toString();
        if (c != '\\') { b.append(c); continue; }
        char e = s.charAt(i++);
        switch (e) {
          case 'n': b.append('\n'); break;
          case 't': b.append('\t'); break;
          case 'r': b.append('\r'); break;
          case 'b': b.append('\b'); break;
          case 'f': b.append('\f'); break;
          case 'u': b.append((char) Integer.parseInt(s.substring(i, i + 4), 16)); i += 4; break;
          default: b.append(e);  // \" \\ \/
        }
      }
    }

    static String quote(String v) {
      StringBuilder b = new StringBuilder("\"");
      for (char c : v.toCharArray()) {
        if (c == '"' || c == '\\') b.append('\\').append(c);
        else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
        else b.append(c);
      }
      return b.append('"').toString();
    }
  }
}
