/* Written by `radassist viewer install`: OHIF @VERSION@ under @MOUNT@, reading the
   node's own DICOMweb on the same origin with the dashboard's session. From radassist's
   web/viewer_app_config.js. */
(function () {
  'use strict';
  var root = window.location.origin + '/dicomweb';
  var KEY_OBJECT_SELECTION = '1.2.840.10008.5.1.4.1.1.88.59';
  var KEY_IMAGES = 'radassist.sopClassHandlerModule.key-images';
  // UCUM codes (the units our SR is written in, DICOM CID 7181) whose code is not what
  // a reader expects to see; the others (mm, mm2, ml, %) read as they are.
  var UNIT_SYMBOLS = { "[hnsf'U]": 'HU' };

  function asArray(sequence) {
    if (!sequence) {
      return [];
    }
    return Array.isArray(sequence) ? sequence : [sequence];
  }

  // OHIF 3.13 labels an SR measurement with its unit's UCUM code value ("79.10
  // [hnsf'U]"), not its code meaning; the SR keeps the standard code and the viewer
  // shows the symbol a reader knows.
  function readableUnits(args) {
    var measurement = args.measurement;
    asArray(measurement.labels).forEach(function (label) {
      if (typeof label.value !== 'string') {
        return;
      }
      Object.keys(UNIT_SYMBOLS).forEach(function (code) {
        var suffix = ' ' + code;
        if (label.value.slice(-suffix.length) === suffix) {
          label.value = label.value.slice(0, -suffix.length) + ' ' + UNIT_SYMBOLS[code];
        }
      });
    });
    return measurement;
  }

  // OHIF 3.13 draws at most five of a measurement's labels beside it: its numbers in the
  // SR's order, then the finding site's anatomy (labelled with its SNOMED code, without
  // its side). A reader looks first for where the lesion is and how big: the lesion's
  // number and place (our tracking identifier, "Lesion 1 (right parietal)") come first,
  // then the sizes and the probability; the other numbers stay in the SR.
  var SHOWN_FIRST = [
    'Volume',
    'Volume of ellipsoid',
    'Thickness',
    'Probability',
    'Mean Attenuation Coefficient',
    'Long axis',
  ];
  var READABLE_NAMES = { 'Volume of ellipsoid': 'ABC/2' };
  var FINDING_SITE = '363698007';

  function placeFirst(measurement) {
    var match = /^(Lesion \d+) \((.+)\)$/.exec(measurement.TrackingIdentifier || '');
    if (!match) {
      return; // not one of our located lesions: as OHIF lays it out
    }
    var labels = asArray(measurement.labels).filter(function (label) {
      return label.label !== FINDING_SITE;
    });
    function rank(label) {
      var at = SHOWN_FIRST.indexOf(label.label);
      return at === -1 ? SHOWN_FIRST.length : at;
    }
    labels = labels
      .map(function (label, index) {
        return { label: label, index: index };
      })
      .sort(function (a, b) {
        return rank(a.label) - rank(b.label) || a.index - b.index;
      })
      .map(function (entry) {
        var label = entry.label;
        var name = READABLE_NAMES[label.label];
        return name ? { label: name, value: label.value } : label;
      });
    measurement.labels = [{ label: match[1], value: match[2] }].concat(labels);
  }

  function readableMeasurement(args) {
    readableUnits(args);
    placeFirst(args.measurement);
    return args.measurement;
  }

  // OHIF 3.13 has no handler for Key Object Selection documents: it lists ours with
  // its "unsupported" warning. This one makes each KOS a series of the key images it
  // selects, shown by the image viewport like any stack. The images are looked up
  // when asked for, since the series they belong to may load after the KOS.
  function keyImageDisplaySets(instances) {
    return instances.map(function (kos) {
      var selected = {};
      asArray(kos.ContentSequence).forEach(function (item) {
        asArray(item.ReferencedSOPSequence).forEach(function (reference) {
          selected[reference.ReferencedSOPInstanceUID] = true;
        });
      });
      var seriesUIDs = [];
      asArray(kos.CurrentRequestedProcedureEvidenceSequence).forEach(function (study) {
        asArray(study.ReferencedSeriesSequence).forEach(function (series) {
          seriesUIDs.push(series.SeriesInstanceUID);
        });
      });
      var wanted = Object.keys(selected).length;
      var complete = null; // every selected image, once found: the same array from then on
      function keyImages() {
        var displaySetService = window.services && window.services.displaySetService;
        if (complete || !displaySetService) {
          return complete || [];
        }
        var found = [];
        seriesUIDs.forEach(function (seriesUID) {
          displaySetService.getDisplaySetsForSeries(seriesUID).forEach(function (source) {
            asArray(source.images).forEach(function (image) {
              if (selected[image.SOPInstanceUID] && found.indexOf(image) === -1) {
                found.push(image);
              }
            });
          });
        });
        if (found.length === wanted) {
          complete = found;
        }
        return found;
      }
      var displaySet = {
        displaySetInstanceUID: 'radassist-key-images-' + kos.SOPInstanceUID,
        SOPClassHandlerId: KEY_IMAGES,
        SOPClassUID: kos.SOPClassUID,
        SOPInstanceUID: kos.SOPInstanceUID,
        StudyInstanceUID: kos.StudyInstanceUID,
        SeriesInstanceUID: kos.SeriesInstanceUID,
        SeriesNumber: kos.SeriesNumber || 0,
        SeriesDate: kos.SeriesDate,
        SeriesTime: kos.SeriesTime,
        SeriesDescription: kos.SeriesDescription || 'Key images',
        Modality: kos.Modality,
        label: kos.SeriesDescription || 'Key images',
        instance: kos,
        // Listed like the SR and the SEG: a text entry, no picture.
        thumbnailSrc: null,
        isReconstructable: false,
        isMultiFrame: false,
        supportsWindowLevel: true,
      };
      Object.defineProperty(displaySet, 'images', { enumerable: true, get: keyImages });
      Object.defineProperty(displaySet, 'instances', { enumerable: true, get: keyImages });
      Object.defineProperty(displaySet, 'FrameOfReferenceUID', {
        enumerable: true,
        get: function () {
          var first = keyImages()[0];
          return first && first.FrameOfReferenceUID;
        },
      });
      return displaySet;
    });
  }

  var radassistExtension = {
    id: 'radassist',
    getSopClassHandlerModule: function () {
      return [
        {
          name: 'key-images',
          sopClassUids: [KEY_OBJECT_SELECTION],
          getDisplaySetsFromSeries: keyImageDisplaySets,
        },
      ];
    },
  };

  window.config = {
    name: 'radassist',
    routerBasename: '@MOUNT@',
    extensions: [radassistExtension],
    modes: [],
    modesConfiguration: {
      // The viewer the dashboard links to: it also reads our key images, and shows
      // them in its image viewport.
      '@ohif/mode-longitudinal': {
        sopClassHandlers: { $push: [KEY_IMAGES] },
        routes: {
          0: {
            layoutInstance: {
              props: { viewports: { 0: { displaySetsToDisplay: { $push: [KEY_IMAGES] } } } },
            },
          },
        },
      },
    },
    customizationService: {
      // No guided tour over the images: it held every click until dismissed.
      'ohif.tours': [],
      onBeforeSRAddMeasurement: readableMeasurement,
    },
    showStudyList: true,
    maxNumberOfWebWorkers: 2,
    showWarningMessageForCrossOrigin: false,
    showCPUFallbackMessage: true,
    showLoadingIndicator: true,
    strictZSpacingForVolumeViewport: true,
    // The node's own pages carry the "not for clinical use" notice of its models.
    investigationalUseDialog: { option: 'never' },
    maxNumRequests: { interaction: 100, thumbnail: 5, prefetch: 10 },
    showErrorDetails: 'always',
    defaultDataSourceName: 'radassist',
    dataSources: [
      {
        namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
        sourceName: 'radassist',
        configuration: {
          friendlyName: 'radassist node',
          name: 'radassist',
          wadoUriRoot: root,
          qidoRoot: root,
          wadoRoot: root,
          qidoSupportsIncludeField: false,
          imageRendering: 'wadors',
          thumbnailRendering: 'wadors',
          enableStudyLazyLoad: true,
          supportsFuzzyMatching: false,
          supportsWildcard: true,
          staticWado: false,
          singlepart: 'bulkdata,video',
          bulkDataURI: { enabled: true, relativeResolution: 'studies' },
          omitQuotationForMultipartRequest: true,
        },
      },
    ],
  };

  // OHIF 3.13's SR viewport tells cornerstone which SR outlines it shows only after the
  // viewport has drawn its first image, and nothing draws the outlines again: the report
  // opened on its key slice without the lesion until the reader scrolled. Draw a newly
  // enabled viewport's annotations again once that has had time to happen.
  var redrawAfterMs = [250, 1000, 2500, 5000];
  var waiting = window.setInterval(function () {
    var core = window.cornerstone;
    var tools = window.cornerstoneTools;
    if (!core || !core.eventTarget || !tools) {
      return;
    }
    window.clearInterval(waiting);
    core.eventTarget.addEventListener(core.Enums.Events.ELEMENT_ENABLED, function (event) {
      var viewportId = event.detail.viewportId;
      redrawAfterMs.forEach(function (delay) {
        window.setTimeout(function () {
          if (core.getEnabledElementByViewportId(viewportId)) {  // not closed since
            tools.utilities.triggerAnnotationRenderForViewportIds([viewportId]);
          }
        }, delay);
      });
    });
  }, 100);
})();
