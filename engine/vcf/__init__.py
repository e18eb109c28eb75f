"""The VCF text layer: every module that reads or writes VCF text uses these pieces.

* ``textio``   - the one opener (plain/gzip/BGZF), the one wording for unreadable streams
  (``stream_error``), line chunking, and the one atomic output writer (``atomic_output``).
* ``header``   - the one header object, ``VcfHeader``: meta lines, INFO/FORMAT definitions
  (Number/Type/Description), contigs, samples; checked for the importer, changed and written by
  the normaliser and the annotator.
* ``info``     - the one INFO parser and writer (``parse_info``/``render_info``).
* ``textscan`` - vectorised field scanning and hashing of chunks of lines (numpy).
* ``alleles``, ``genotypes`` - ELLA's allele and genotype rules; ``records`` - ``VariantRecord``
  and friends, what the importer stores; ``sites`` - one line split per ALT while parsing.

Three record parsers, on purpose (a deliberate trio; each is measured faster for its job and the
differential tests keep them equal):

1. the exact line parser, ``reader.RecordParser`` / ``iter_variant_batches``: every rule, every
   message with file and line; the reference;
2. the columnar fast path, ``fastpath.iter_variant_blocks``: pyarrow parses the simple lines of a
   block in bulk and hands every other line to (1); ``tests/test_fastpath.py`` checks both give
   the same records and the same stored rows;
3. the vectorised annotate scan, ``engine.annotate.annotator`` over ``textscan``: positions and
   allele hashes of whole chunks in numpy, never a Python object per record; lines it cannot
   handle in bulk take its per-record general path; ``tests/test_annotate_vcfanno.py`` compares
   it with vcfanno.

The normaliser (``engine.normalise``) works per line on the same opener, header and writer.
``engine/vcf`` never imports ``engine.annotate`` or ``engine.normalise``.
"""

from engine.vcf.alleles import allele_from_vcf
from engine.vcf.reader import iter_variant_batches, read_vcf_samples

__all__ = ["allele_from_vcf", "iter_variant_batches", "read_vcf_samples"]
